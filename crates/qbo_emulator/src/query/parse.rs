//! Lexer and parser of the QBO query-language subset:
//!
//! ```text
//! SELECT * [, prop ...] | COUNT(*) FROM Entity
//!   [WHERE prop op value [AND prop op value ...]]
//!   [ORDERBY | ORDER BY prop [ASC|DESC] [, prop [ASC|DESC] ...]]
//!   [STARTPOSITION n] [MAXRESULTS n]          (the last three clauses in any order, once each)
//! op    := = | < | > | <= | >= | IN (v, ...) | LIKE 'pat%'
//! value := 'string with \' escapes' | number | true | false | CURRENT_DATE
//! ```
//! Keywords are case-insensitive. Syntax problems are 4000 "Error parsing query" with a
//! `QueryParserError` detail in the style of Intuit's JavaCC parser; semantic problems (unknown
//! entity or property, limits) are checked later and are 4001 "Invalid query".

use std::fmt;

/// A query error as QBO reports it inside a 400 ValidationFault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    /// `"4000"` (parse) or `"4001"` (validation).
    pub code: &'static str,
    /// `"Error parsing query"` or `"Invalid query"`.
    pub message: &'static str,
    /// `QueryParserError: …` or `QueryValidationError: …`.
    pub detail: String,
}

impl QueryError {
    pub(crate) fn parse(detail: impl Into<String>) -> QueryError {
        QueryError { code: "4000", message: "Error parsing query", detail: format!("QueryParserError: {}", detail.into()) }
    }
    pub(crate) fn invalid(detail: impl Into<String>) -> QueryError {
        QueryError { code: "4001", message: "Invalid query", detail: format!("QueryValidationError: {}", detail.into()) }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.message, self.code, self.detail)
    }
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Str(String),
    Num(String),
    Bool(bool),
    CurrentDate,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Like,
}

/// `prop op value(s)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub prop: String,
    pub op: Op,
    pub values: Vec<Lit>,
}

/// One ORDERBY key.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderKey {
    pub prop: String,
    pub desc: bool,
}

/// A parsed (not yet validated) statement.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Statement {
    pub count: bool,
    pub entity: String,
    /// Extra projections after `*` (`SELECT *, Sku FROM Item`); accepted and ignored, since
    /// `SELECT *` already returns every populated field.
    pub extra_select: Vec<String>,
    pub conds: Vec<Cond>,
    pub order: Vec<OrderKey>,
    pub start: Option<i64>,
    pub max: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
enum T {
    Ident(String),
    Str(String),
    Num(String),
    Star,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
struct Tok {
    t: T,
    line: usize,
    col: usize,
}

impl Tok {
    fn describe(&self) -> String {
        match &self.t {
            T::Ident(s) => format!("\"{s}\""),
            T::Str(s) => format!("\"'{s}'\""),
            T::Num(s) => format!("\"{s}\""),
            T::Star => "\"*\"".into(),
            T::LParen => "\"(\"".into(),
            T::RParen => "\")\"".into(),
            T::Comma => "\",\"".into(),
            T::Op(o) => format!("\"{o}\""),
            T::Eof => "<EOF>".into(),
        }
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, QueryError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let lexerr = |line: usize, col: usize, what: String| QueryError::parse(format!("Lexical error at line {line}, column {col}. Encountered: {what}"));
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        if c == '\n' {
            line += 1;
            col = 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        let start = i;
        let t = if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            T::Ident(chars[start..i].iter().collect())
        } else if c.is_ascii_digit() || ((c == '-' || c == '+') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            T::Num(chars[start..i].iter().collect())
        } else if c == '\'' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        let seen: String = chars[start..].iter().collect();
                        return Err(lexerr(line, col + (i - start), format!("<EOF> after : \"{seen}\"")));
                    }
                    Some('\\') => {
                        if let Some(&n) = chars.get(i + 1) {
                            s.push(n);
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            T::Str(s)
        } else {
            i += 1;
            match c {
                '*' => T::Star,
                '(' => T::LParen,
                ')' => T::RParen,
                ',' => T::Comma,
                '=' => T::Op("="),
                '<' | '>' | '!' => {
                    let two: Option<&'static str> = match (c, chars.get(i)) {
                        ('<', Some('=')) => Some("<="),
                        ('>', Some('=')) => Some(">="),
                        ('<', Some('>')) => Some("<>"),
                        ('!', Some('=')) => Some("!="),
                        _ => None,
                    };
                    match (two, c) {
                        (Some(op), _) => {
                            i += 1;
                            T::Op(op)
                        }
                        (None, '<') => T::Op("<"),
                        (None, '>') => T::Op(">"),
                        _ => return Err(lexerr(tl, tc, format!("\"{c}\""))),
                    }
                }
                other => return Err(lexerr(tl, tc, format!("\"{other}\" ({})", other as u32))),
            }
        };
        col += i - start;
        out.push(Tok { t, line: tl, col: tc });
    }
    out.push(Tok { t: T::Eof, line, col });
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
}

impl P {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().t, T::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn err(&self, expecting: &[&str]) -> QueryError {
        let t = self.peek();
        QueryError::parse(format!("Encountered {} at line {}, column {}. Was expecting one of: {}", t.describe(), t.line, t.col, expecting.join(", ")))
    }
    fn expect_kw(&mut self, kw: &str, shown: &str) -> Result<(), QueryError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err(&[shown]))
        }
    }
    fn expect(&mut self, t: T, shown: &str) -> Result<(), QueryError> {
        if self.peek().t == t {
            self.next();
            Ok(())
        } else {
            Err(self.err(&[shown]))
        }
    }
    fn ident(&mut self, shown: &str) -> Result<String, QueryError> {
        match &self.peek().t {
            T::Ident(s) if !is_reserved(s) => {
                let s = s.clone();
                self.next();
                Ok(s)
            }
            _ => Err(self.err(&[shown])),
        }
    }
    fn value(&mut self) -> Result<Lit, QueryError> {
        let v = match &self.peek().t {
            T::Str(s) => Lit::Str(s.clone()),
            T::Num(n) => Lit::Num(n.clone()),
            T::Ident(s) if s.eq_ignore_ascii_case("true") => Lit::Bool(true),
            T::Ident(s) if s.eq_ignore_ascii_case("false") => Lit::Bool(false),
            T::Ident(s) if s.eq_ignore_ascii_case("current_date") => Lit::CurrentDate,
            _ => return Err(self.err(&["<STRING_LITERAL>", "<INTEGER>", "\"true\"", "\"false\"", "\"CURRENT_DATE\""])),
        };
        self.next();
        Ok(v)
    }
    fn int(&mut self) -> Result<i64, QueryError> {
        match &self.peek().t {
            T::Num(n) => match n.parse::<i64>() {
                Ok(v) => {
                    self.next();
                    Ok(v)
                }
                Err(_) => Err(self.err(&["<INTEGER>"])),
            },
            _ => Err(self.err(&["<INTEGER>"])),
        }
    }
}

const RESERVED: &[&str] =
    &["select", "from", "where", "and", "or", "in", "like", "order", "orderby", "by", "asc", "desc", "startposition", "maxresults", "count", "true", "false"];

fn is_reserved(s: &str) -> bool {
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(s))
}

const AFTER_CLAUSE: &[&str] = &["<EOF>", "\"and\"", "\"orderby\"", "\"order\"", "\"startposition\"", "\"maxresults\""];

/// Parses a statement. Does not check entity or property names (see `exec`).
pub fn parse(src: &str) -> Result<Statement, QueryError> {
    if src.trim().is_empty() {
        return Err(QueryError::parse("The query provided was empty"));
    }
    let mut p = P { toks: lex(src)?, pos: 0 };
    let mut st = Statement::default();
    p.expect_kw("select", "\"select\"")?;
    if p.peek().t == T::Star {
        p.next();
        while p.peek().t == T::Comma {
            p.next();
            st.extra_select.push(p.ident("<IDENTIFIER>")?);
        }
    } else if p.eat_kw("count") {
        p.expect(T::LParen, "\"(\"")?;
        p.expect(T::Star, "\"*\"")?;
        p.expect(T::RParen, "\")\"")?;
        st.count = true;
    } else {
        return Err(p.err(&["\"*\"", "\"count\""]));
    }
    p.expect_kw("from", "\"from\"")?;
    st.entity = p.ident("<IDENTIFIER>")?;
    if p.eat_kw("where") {
        loop {
            let prop = p.ident("<IDENTIFIER>")?;
            let op = match p.peek().t.clone() {
                T::Op("=") => Op::Eq,
                T::Op("<") => Op::Lt,
                T::Op(">") => Op::Gt,
                T::Op("<=") => Op::Le,
                T::Op(">=") => Op::Ge,
                T::Ident(s) if s.eq_ignore_ascii_case("in") => Op::In,
                T::Ident(s) if s.eq_ignore_ascii_case("like") => Op::Like,
                _ => return Err(p.err(&["\"=\"", "\"<\"", "\">\"", "\"<=\"", "\">=\"", "\"in\"", "\"like\""])),
            };
            p.next();
            let mut values = Vec::new();
            if op == Op::In {
                p.expect(T::LParen, "\"(\"")?;
                values.push(p.value()?);
                while p.peek().t == T::Comma {
                    p.next();
                    values.push(p.value()?);
                }
                p.expect(T::RParen, "\")\"")?;
            } else {
                values.push(p.value()?);
            }
            st.conds.push(Cond { prop, op, values });
            if !p.eat_kw("and") {
                break;
            }
        }
    }
    let (mut seen_order, mut seen_start, mut seen_max) = (false, false, false);
    loop {
        if !seen_order && (p.is_kw("orderby") || p.is_kw("order")) {
            if p.eat_kw("order") {
                p.expect_kw("by", "\"by\"")?;
            } else {
                p.next();
            }
            loop {
                let prop = p.ident("<IDENTIFIER>")?;
                let desc = if p.eat_kw("desc") {
                    true
                } else {
                    p.eat_kw("asc");
                    false
                };
                st.order.push(OrderKey { prop, desc });
                if p.peek().t != T::Comma {
                    break;
                }
                p.next();
            }
            seen_order = true;
        } else if !seen_start && p.eat_kw("startposition") {
            st.start = Some(p.int()?);
            seen_start = true;
        } else if !seen_max && p.eat_kw("maxresults") {
            st.max = Some(p.int()?);
            seen_max = true;
        } else if p.peek().t == T::Eof {
            break;
        } else {
            return Err(p.err(AFTER_CLAUSE));
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_extraction_query() {
        let st = parse(
            "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2025-01-01T00:00:00Z' \
             AND MetaData.LastUpdatedTime < '2025-02-01T00:00:00-08:00' \
             ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000",
        )
        .unwrap();
        assert!(!st.count);
        assert_eq!(st.entity, "Invoice");
        assert_eq!(st.conds.len(), 2);
        assert_eq!(st.conds[0].op, Op::Ge);
        assert_eq!(st.conds[1].op, Op::Lt);
        assert_eq!(st.order, vec![OrderKey { prop: "MetaData.LastUpdatedTime".into(), desc: false }]);
        assert_eq!((st.start, st.max), (Some(1), Some(1000)));
    }

    #[test]
    fn variants() {
        let st = parse("select count(*) from customer where Active IN (true, false)").unwrap();
        assert!(st.count);
        assert_eq!(st.conds[0].values, vec![Lit::Bool(true), Lit::Bool(false)]);
        let st = parse("SELECT * FROM Item ORDER BY Metadata.LastUpdatedTime DESC, Id ASC MAXRESULTS 5 STARTPOSITION 6").unwrap();
        assert_eq!(st.order.len(), 2);
        assert!(st.order[0].desc);
        assert_eq!((st.start, st.max), (Some(6), Some(5)));
        let st = parse("SELECT * FROM Customer WHERE DisplayName = 'Amy\\'s Bird Sanctuary'").unwrap();
        assert_eq!(st.conds[0].values, vec![Lit::Str("Amy's Bird Sanctuary".into())]);
        let st = parse("SELECT * FROM Customer WHERE DisplayName LIKE 'Amy%'").unwrap();
        assert_eq!(st.conds[0].op, Op::Like);
        let st = parse("SELECT * FROM Invoice WHERE TxnDate <= CURRENT_DATE AND Balance > 0.5").unwrap();
        assert_eq!(st.conds[0].values, vec![Lit::CurrentDate]);
        assert_eq!(st.conds[1].values, vec![Lit::Num("0.5".into())]);
        let st = parse("SELECT *, Sku FROM Item MAXRESULTS 1000").unwrap();
        assert_eq!(st.extra_select, vec!["Sku".to_string()]);
        let st = parse("SELECT * FROM Invoice\n  WHERE Id IN ('1', '2', 3)\n").unwrap();
        assert_eq!(st.conds[0].values.len(), 3);
    }

    #[test]
    fn errors_are_4000() {
        for q in [
            "",
            "   ",
            "SELECT FROM Invoice",
            "SELECT * Invoice",
            "SELECT * FROM Invoice WHERE",
            "SELECT * FROM Customer WHERE DisplayName = 'Amy's'",
            "SELECT * FROM Customer WHERE DisplayName = 'open",
            "SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'",
            "SELECT * FROM Invoice ORDERBY",
            "SELECT * FROM Invoice MAXRESULTS ten",
            "SELECT * FROM Invoice MAXRESULTS 10 MAXRESULTS 10",
            "SELECT * FROM Invoice WHERE Id != '1'",
            "SELECT * FROM Invoice GROUP BY Id",
            "SELECT * FROM Invoice WHERE Id = '1' #",
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.code, "4000", "{q}");
            assert_eq!(e.message, "Error parsing query");
            assert!(e.detail.starts_with("QueryParserError: "), "{}", e.detail);
        }
        assert_eq!(parse("").unwrap_err().detail, "QueryParserError: The query provided was empty");
        let e = parse("SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'").unwrap_err();
        assert!(e.detail.contains("\"OR\" at line 1, column 38"), "{}", e.detail);
    }
}
