//! Validation and execution of parsed statements against a [`Table`].
//!
//! The hot path — `WHERE MetaData.LastUpdatedTime >= A AND < B ORDERBY MetaData.LastUpdatedTime
//! STARTPOSITION s MAXRESULTS m` — is two binary searches in the `(LastUpdatedTime, Id)` index
//! and a copy of `m` pre-serialised records into the response buffer: no per-record parsing,
//! allocation or serde. Anything else (other filters, other orderings) scans the candidate range
//! and sorts, which is still fast at the sizes QBO pages allow.

use std::cmp::Ordering;

use crate::config::DefaultOrder;
use crate::data::{Entity, Ext, Rec, Table};
use crate::pacific::{days_to_date, pacific_local_to_utc_ms, parse_date_literal, parse_datetime_literal, today_pacific};

use super::parse::{Lit, Op, QueryError, Statement};

/// Default `MAXRESULTS` when a query has none.
pub const DEFAULT_MAX_RESULTS: i64 = 100;
/// Largest `MAXRESULTS` accepted.
pub const MAX_MAX_RESULTS: i64 = 1000;

/// A queryable property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prop {
    Id,
    Created,
    Updated,
    TxnDate,
    DueDate,
    CustomerRef,
    Balance,
    TotalAmt,
    UnitPrice,
    Active,
    /// DisplayName / Name / FullyQualifiedName (Customer, Item), DocNumber (Invoice).
    Name,
    CompanyName,
    GivenName,
    FamilyName,
    Type,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    Time,
    Date,
    Money,
    Bool,
    Str,
}

impl Prop {
    fn kind(self) -> Kind {
        match self {
            Prop::Id | Prop::CustomerRef => Kind::Id,
            Prop::Created | Prop::Updated => Kind::Time,
            Prop::TxnDate | Prop::DueDate => Kind::Date,
            Prop::Balance | Prop::TotalAmt | Prop::UnitPrice => Kind::Money,
            Prop::Active => Kind::Bool,
            Prop::Name | Prop::CompanyName | Prop::GivenName | Prop::FamilyName | Prop::Type => Kind::Str,
        }
    }

    /// Resolves a property name for an entity, case-insensitively (`MetaData.` or `Metadata.`).
    pub(crate) fn resolve(entity: Entity, raw: &str) -> Option<Prop> {
        let l = raw.to_ascii_lowercase();
        let common = match l.as_str() {
            "id" => Some(Prop::Id),
            "metadata.createtime" => Some(Prop::Created),
            "metadata.lastupdatedtime" => Some(Prop::Updated),
            _ => None,
        };
        common.or(match (entity, l.as_str()) {
            (Entity::Invoice, "docnumber") => Some(Prop::Name),
            (Entity::Invoice, "txndate") => Some(Prop::TxnDate),
            (Entity::Invoice, "duedate") => Some(Prop::DueDate),
            (Entity::Invoice, "customerref") => Some(Prop::CustomerRef),
            (Entity::Invoice | Entity::Customer, "balance") => Some(Prop::Balance),
            (Entity::Invoice, "totalamt") => Some(Prop::TotalAmt),
            (Entity::Customer | Entity::Item, "active") => Some(Prop::Active),
            (Entity::Customer, "displayname") => Some(Prop::Name),
            (Entity::Customer | Entity::Item, "fullyqualifiedname") => Some(Prop::Name),
            (Entity::Customer, "companyname") => Some(Prop::CompanyName),
            (Entity::Customer, "givenname") => Some(Prop::GivenName),
            (Entity::Customer, "familyname") => Some(Prop::FamilyName),
            (Entity::Item, "name") => Some(Prop::Name),
            (Entity::Item, "type") => Some(Prop::Type),
            (Entity::Item, "unitprice") => Some(Prop::UnitPrice),
            _ => None,
        })
    }

    /// Integer value of a numeric-like property (seconds, days, cents, ids).
    fn int(self, r: &Rec) -> i64 {
        match (self, &r.ext) {
            (Prop::Id, _) => r.id as i64,
            (Prop::Created, _) => r.created,
            (Prop::Updated, _) => r.updated,
            (Prop::TxnDate, Ext::Invoice { txn, .. }) => *txn,
            (Prop::DueDate, Ext::Invoice { due, .. }) => *due,
            (Prop::CustomerRef, Ext::Invoice { cust, .. }) => *cust as i64,
            (Prop::Balance, Ext::Invoice { balance, .. } | Ext::Customer { balance }) => *balance,
            (Prop::TotalAmt, Ext::Invoice { total, .. }) => *total,
            (Prop::UnitPrice, Ext::Item { price, .. }) => *price,
            (Prop::Active, _) => r.active as i64,
            _ => 0,
        }
    }

    fn str<'a>(self, t: &'a Table, r: &'a Rec) -> &'a str {
        let i = r.id as usize - 1;
        match self {
            Prop::Name => &r.name,
            Prop::CompanyName => t.ctx.customers.get(i).and_then(|c| c.company.as_deref()).unwrap_or(""),
            Prop::GivenName => t.ctx.customers.get(i).map(|c| c.given.as_str()).unwrap_or(""),
            Prop::FamilyName => t.ctx.customers.get(i).map(|c| c.family.as_str()).unwrap_or(""),
            Prop::Type => match r.ext {
                Ext::Item { kind, .. } => kind.name(),
                _ => "",
            },
            _ => "",
        }
    }
}

fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// `%`-only LIKE, case-insensitive. `pat` is lower-case.
fn like(s: &str, pat: &str) -> bool {
    let s = s.to_lowercase();
    let parts: Vec<&str> = pat.split('%').collect();
    if parts.len() == 1 {
        return s == pat;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(p) => rest = &rest[p + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A compiled predicate.
#[derive(Clone, Debug)]
enum Pred {
    /// `lo <= value < hi` on an integer-valued property.
    Range(Prop, i64, i64),
    /// Integer IN (...).
    IntIn(Prop, Vec<i64>),
    /// Allowed Active values, indexed by `active as usize`.
    Active([bool; 2]),
    StrCmp(Prop, Op, String),
    StrIn(Prop, Vec<String>),
    Like(Prop, String),
}

impl Pred {
    fn matches(&self, t: &Table, r: &Rec) -> bool {
        match self {
            Pred::Range(p, lo, hi) => {
                let v = p.int(r);
                *lo <= v && v < *hi
            }
            Pred::IntIn(p, vs) => vs.contains(&p.int(r)),
            Pred::Active(ok) => ok[r.active as usize],
            Pred::StrCmp(p, op, v) => {
                let o = cmp_ci(p.str(t, r), v);
                match op {
                    Op::Eq => o == Ordering::Equal,
                    Op::Lt => o == Ordering::Less,
                    Op::Gt => o == Ordering::Greater,
                    Op::Le => o != Ordering::Greater,
                    Op::Ge => o != Ordering::Less,
                    _ => false,
                }
            }
            Pred::StrIn(p, vs) => vs.iter().any(|v| cmp_ci(p.str(t, r), v) == Ordering::Equal),
            Pred::Like(p, pat) => like(p.str(t, r), pat),
        }
    }
}

/// A validated query, ready to run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub entity: Entity,
    pub count: bool,
    /// `[lo, hi)` bounds on LastUpdatedTime seconds.
    lut: (i64, i64),
    /// Ids from `Id =` / `Id IN` (intersected), if any.
    ids: Option<Vec<u32>>,
    residual: Vec<Pred>,
    /// As written in ORDERBY; empty without one ([`Plan::default_order`] applies).
    order: Vec<(Prop, bool)>,
    default_order: DefaultOrder,
    /// 1-based.
    pub start: usize,
    pub max: usize,
}

fn lit_text(l: &Lit) -> String {
    match l {
        Lit::Str(s) | Lit::Num(s) => s.clone(),
        Lit::Bool(b) => b.to_string(),
        Lit::CurrentDate => "CURRENT_DATE".into(),
    }
}

fn bad_value(prop: &str, l: &Lit) -> QueryError {
    QueryError::parse(format!("Invalid value '{}' for property {prop}", lit_text(l)))
}

/// Parses a decimal amount to cents (extra decimals are truncated).
fn cents(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    if w.is_empty() && f.is_empty() {
        return None;
    }
    let w: i64 = if w.is_empty() { 0 } else { w.parse().ok()? };
    let mut fc = 0;
    for (i, c) in f.chars().enumerate() {
        let d = c.to_digit(10)? as i64;
        if i < 2 {
            fc += d * if i == 0 { 10 } else { 1 };
        }
    }
    let v = w * 100 + fc;
    Some(if neg { -v } else { v })
}

/// Value of a literal in the property's integer unit; time values are milliseconds.
fn int_value(prop: Prop, raw: &str, l: &Lit) -> Result<Option<i64>, QueryError> {
    Ok(match (prop.kind(), l) {
        (Kind::Id, Lit::Str(s) | Lit::Num(s)) => s.trim().parse::<i64>().ok(),
        (Kind::Time, Lit::Str(s)) => Some(parse_datetime_literal(s).ok_or_else(|| bad_value(raw, l))?),
        (Kind::Time, Lit::CurrentDate) => Some(pacific_local_to_utc_ms(days_to_date(today_pacific()).and_hms_opt(0, 0, 0).unwrap_or_default())),
        (Kind::Date, Lit::Str(s)) => Some(parse_date_literal(s).ok_or_else(|| bad_value(raw, l))?),
        (Kind::Date, Lit::CurrentDate) => Some(today_pacific()),
        (Kind::Money, Lit::Str(s) | Lit::Num(s)) => Some(cents(s).ok_or_else(|| bad_value(raw, l))?),
        (Kind::Bool, Lit::Bool(b)) => Some(*b as i64),
        (Kind::Bool, Lit::Str(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => Some(s.eq_ignore_ascii_case("true") as i64),
        _ => return Err(bad_value(raw, l)),
    })
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// `[lo, hi)` of integer property values satisfying `value op v`. Times compare a whole-second
/// record value with a millisecond literal.
fn range_for(kind: Kind, op: Op, v: i64) -> (i64, i64) {
    let (fl, ce) = if kind == Kind::Time { (v.div_euclid(1000), ceil_div(v, 1000)) } else { (v, v) };
    match op {
        Op::Ge => (ce, i64::MAX),
        Op::Gt => (fl + 1, i64::MAX),
        Op::Le => (i64::MIN, fl + 1),
        Op::Lt => (i64::MIN, ce),
        Op::Eq => {
            if fl == ce {
                (fl, fl + 1)
            } else {
                (0, 0)
            }
        }
        _ => (i64::MIN, i64::MAX),
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Lt => "<",
        Op::Gt => ">",
        Op::Le => "<=",
        Op::Ge => ">=",
        Op::In => "IN",
        Op::Like => "LIKE",
    }
}

/// Validates a statement into a plan (4001 for unknown entities and properties, limits).
pub(crate) fn plan(st: &Statement) -> Result<Plan, QueryError> {
    let entity = Entity::from_query_name(&st.entity).ok_or_else(|| QueryError::invalid(format!("invalid context declaration: {}", st.entity)))?;
    let not_found = |p: &str| QueryError::invalid(format!("Property {p} not found for Entity {}", entity.name()));
    for p in &st.extra_select {
        if Prop::resolve(entity, p).is_none() && !p.eq_ignore_ascii_case("sku") {
            return Err(not_found(p));
        }
    }
    let mut lut = (i64::MIN, i64::MAX);
    let mut ids: Option<Vec<u32>> = None;
    let mut residual = Vec::new();
    let mut active_filtered = false;
    for c in &st.conds {
        let prop = Prop::resolve(entity, &c.prop).ok_or_else(|| not_found(&c.prop))?;
        let kind = prop.kind();
        let unsupported = || QueryError::invalid(format!("Operator {} is not supported for property {}", op_name(c.op), c.prop));
        match c.op {
            Op::Like => {
                if kind != Kind::Str {
                    return Err(unsupported());
                }
                let pat = match &c.values[0] {
                    Lit::Str(s) => s.to_lowercase(),
                    l => return Err(bad_value(&c.prop, l)),
                };
                residual.push(Pred::Like(prop, pat));
            }
            _ if kind == Kind::Str => {
                let vals: Vec<String> = c.values.iter().map(lit_text).collect();
                residual.push(match c.op {
                    Op::In => Pred::StrIn(prop, vals),
                    op => Pred::StrCmp(prop, op, vals[0].clone()),
                });
            }
            Op::In | Op::Eq if prop == Prop::Id => {
                let mut v: Vec<u32> = Vec::new();
                for l in &c.values {
                    if let Some(n) = int_value(prop, &c.prop, l)? {
                        if n > 0 && n <= u32::MAX as i64 {
                            v.push(n as u32);
                        }
                    }
                }
                v.sort_unstable();
                v.dedup();
                ids = Some(match ids {
                    None => v,
                    Some(prev) => prev.into_iter().filter(|x| v.binary_search(x).is_ok()).collect(),
                });
            }
            _ if prop == Prop::Id => return Err(unsupported()),
            Op::In => {
                let mut v = Vec::new();
                for l in &c.values {
                    if let Some(n) = int_value(prop, &c.prop, l)? {
                        match kind {
                            Kind::Time if n % 1000 == 0 => v.push(n / 1000),
                            Kind::Time => {}
                            _ => v.push(n),
                        }
                    }
                }
                if prop == Prop::Active {
                    active_filtered = true;
                    residual.push(Pred::Active([v.contains(&0), v.contains(&1)]));
                } else {
                    residual.push(Pred::IntIn(prop, v));
                }
            }
            op => {
                if kind == Kind::Bool && op != Op::Eq {
                    return Err(unsupported());
                }
                let v = int_value(prop, &c.prop, &c.values[0])?;
                let (lo, hi) = match v {
                    Some(v) => range_for(kind, op, v),
                    None => (0, 0),
                };
                if prop == Prop::Active {
                    active_filtered = true;
                    residual.push(Pred::Active([lo <= 0 && 0 < hi, lo <= 1 && 1 < hi]));
                } else if prop == Prop::Updated {
                    lut = (lut.0.max(lo), lut.1.min(hi));
                } else {
                    residual.push(Pred::Range(prop, lo, hi));
                }
            }
        }
    }
    // Name lists hide inactive records unless the query filters on Active.
    if entity.is_list() && !active_filtered {
        residual.push(Pred::Active([false, true]));
    }
    residual.retain(|p| !matches!(p, Pred::Active([true, true])));
    let mut order = Vec::new();
    for k in &st.order {
        let prop = Prop::resolve(entity, &k.prop).ok_or_else(|| not_found(&k.prop))?;
        order.push((prop, k.desc));
    }
    let max = st.max.unwrap_or(DEFAULT_MAX_RESULTS);
    if max > MAX_MAX_RESULTS {
        return Err(QueryError::invalid(format!("value {max} is too large. Max allowed value is {MAX_MAX_RESULTS}")));
    }
    if max < 1 {
        return Err(QueryError::invalid(format!("value {max} is too small. Min allowed value is 1")));
    }
    // QuickBooks reads STARTPOSITION 0 as 1 (clients such as hotglue's tap start at 0; the
    // python-quickbooks project changed its own first page after seeing both answer alike).
    let start = match st.start {
        None | Some(0) => 1,
        Some(n) => n,
    };
    if start < 1 {
        return Err(QueryError::invalid(format!("STARTPOSITION {start} is invalid. Min allowed value is 1")));
    }
    Ok(Plan {
        entity,
        count: st.count,
        lut,
        ids,
        residual,
        order,
        default_order: DefaultOrder::Observed,
        start: start.min(1 << 40) as usize,
        max: max as usize,
    })
}

/// The records selected by a plan, in result order.
pub(crate) enum Selection {
    /// `by_updated[lo..hi]` in index order (every record matches).
    Slice { lo: usize, hi: usize },
    /// Record indices in result order. For descending time order only a prefix long enough for
    /// the requested page is materialised.
    List(Vec<u32>),
}

impl Selection {
    pub(crate) fn len(&self) -> usize {
        match self {
            Selection::Slice { lo, hi } => hi - lo,
            Selection::List(v) => v.len(),
        }
    }
    /// Record index at result position `p` (0-based).
    pub(crate) fn at(&self, t: &Table, p: usize) -> u32 {
        match self {
            Selection::Slice { lo, .. } => t.by_updated[lo + p].1,
            Selection::List(v) => v[p],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeOrder {
    Asc,
    Desc,
    Other,
}

impl Plan {
    /// The order a statement without ORDERBY is answered in (the `default_order` knob).
    pub(crate) fn with_default_order(mut self, order: DefaultOrder) -> Plan {
        self.default_order = order;
        self
    }

    /// The sort keys: ORDERBY's, else the default order's. Ties are always by numeric Id.
    fn order_keys(&self) -> Vec<(Prop, bool)> {
        if !self.order.is_empty() {
            return self.order.clone();
        }
        match (self.default_order, self.entity.is_list()) {
            (DefaultOrder::Observed, true) => vec![(Prop::Name, false)],
            (DefaultOrder::Observed, false) => vec![(Prop::Updated, true)],
            (DefaultOrder::Id, _) => vec![(Prop::Id, false)],
        }
    }

    fn time_order(&self) -> TimeOrder {
        let tail_ok = |rest: &[(Prop, bool)]| rest.is_empty() || rest == [(Prop::Id, false)];
        match self.order_keys().as_slice() {
            [(Prop::Updated, false), rest @ ..] if tail_ok(rest) => TimeOrder::Asc,
            [(Prop::Updated, true), rest @ ..] if tail_ok(rest) => TimeOrder::Desc,
            _ => TimeOrder::Other,
        }
    }

    fn matches(&self, t: &Table, r: &Rec) -> bool {
        self.residual.iter().all(|p| p.matches(t, r))
    }

    /// `[lo, hi)` positions of `by_updated` inside the LastUpdatedTime bounds.
    fn range(&self, t: &Table) -> (usize, usize) {
        let (a, b) = self.lut;
        if a >= b {
            return (0, 0);
        }
        let lo = if a == i64::MIN { 0 } else { t.by_updated.partition_point(|k| k.0 < a) };
        let hi = if b == i64::MAX { t.by_updated.len() } else { t.by_updated.partition_point(|k| k.0 < b) };
        (lo, hi.max(lo))
    }

    /// `SELECT COUNT(*)`: binary search only, when the WHERE is just LastUpdatedTime bounds.
    pub(crate) fn count(&self, t: &Table) -> usize {
        if self.ids.is_none() && self.residual.is_empty() {
            let (lo, hi) = self.range(t);
            return hi - lo;
        }
        self.candidates(t).len()
    }

    /// Matching record indices in `(LastUpdatedTime, Id)` order.
    fn candidates(&self, t: &Table) -> Vec<u32> {
        let (a, b) = self.lut;
        match &self.ids {
            Some(ids) => {
                let mut v: Vec<u32> = ids
                    .iter()
                    .filter(|&&id| id as usize <= t.recs.len())
                    .map(|&id| id - 1)
                    .filter(|&i| {
                        let r = &t.recs[i as usize];
                        r.is_live() && a <= r.updated && r.updated < b && self.matches(t, r)
                    })
                    .collect();
                v.sort_unstable_by_key(|&i| (t.recs[i as usize].updated, i));
                v
            }
            None => {
                let (lo, hi) = self.range(t);
                t.by_updated[lo..hi].iter().map(|k| k.1).filter(|&i| self.matches(t, &t.recs[i as usize])).collect()
            }
        }
    }

    /// The selection in result order, complete at least up to position `need`.
    pub(crate) fn select(&self, t: &Table, need: usize) -> Selection {
        let order = self.time_order();
        if self.ids.is_none() && self.residual.is_empty() {
            let (lo, hi) = self.range(t);
            match order {
                TimeOrder::Asc => return Selection::Slice { lo, hi },
                TimeOrder::Desc => return Selection::List(desc_prefix(&t.by_updated[lo..hi], need)),
                TimeOrder::Other => {}
            }
        }
        let mut v = self.candidates(t);
        match order {
            TimeOrder::Asc => {}
            TimeOrder::Desc => {
                let keys: Vec<(i64, u32)> = v.iter().map(|&i| (t.recs[i as usize].updated, i)).collect();
                v = desc_prefix(&keys, need);
            }
            TimeOrder::Other => {
                let keys = self.order_keys();
                v.sort_by(|&x, &y| {
                    let (rx, ry) = (&t.recs[x as usize], &t.recs[y as usize]);
                    for &(p, desc) in &keys {
                        let o = match p.kind() {
                            Kind::Str => cmp_ci(p.str(t, rx), p.str(t, ry)),
                            _ => p.int(rx).cmp(&p.int(ry)),
                        };
                        let o = if desc { o.reverse() } else { o };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    x.cmp(&y)
                });
            }
        }
        Selection::List(v)
    }
}

/// Descending LastUpdatedTime with ties in ascending Id, first `need` entries, from keys sorted
/// ascending by `(time, index)`.
fn desc_prefix(keys: &[(i64, u32)], need: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(need.min(keys.len()));
    let mut end = keys.len();
    while end > 0 && out.len() < need {
        let t = keys[end - 1].0;
        let start = keys[..end].partition_point(|k| k.0 < t);
        out.extend(keys[start..end].iter().map(|k| k.1));
        end = start;
    }
    out.truncate(need);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse::parse;

    fn plan_of(q: &str) -> Result<Plan, QueryError> {
        plan(&parse(q)?)
    }

    #[test]
    fn validation_errors_are_4001() {
        let e = plan_of("SELECT * FROM Custmoer").unwrap_err();
        assert_eq!((e.code, e.message), ("4001", "Invalid query"));
        assert_eq!(e.detail, "QueryValidationError: invalid context declaration: Custmoer");
        let e = plan_of("SELECT * FROM Invoice WHERE NoSuchField = '1'").unwrap_err();
        assert_eq!(e.detail, "QueryValidationError: Property NoSuchField not found for Entity Invoice");
        let e = plan_of("SELECT * FROM Invoice ORDERBY Nope").unwrap_err();
        assert_eq!(e.code, "4001");
        let e = plan_of("SELECT * FROM Invoice MAXRESULTS 1500").unwrap_err();
        assert_eq!(e.detail, "QueryValidationError: value 1500 is too large. Max allowed value is 1000");
        assert_eq!(plan_of("SELECT * FROM Invoice STARTPOSITION 0").unwrap().start, 1, "0 reads as 1, as on QuickBooks");
        assert_eq!(plan_of("SELECT * FROM Invoice STARTPOSITION -3").unwrap_err().code, "4001");
        assert_eq!(plan_of("SELECT * FROM Invoice MAXRESULTS 0").unwrap_err().code, "4001");
        assert_eq!(plan_of("SELECT * FROM Invoice WHERE Id > '5'").unwrap_err().code, "4001");
        assert_eq!(plan_of("SELECT * FROM Invoice WHERE TxnDate LIKE '2020%'").unwrap_err().code, "4001");
        // Active exists on lists only.
        assert_eq!(plan_of("SELECT * FROM Invoice WHERE Active = true").unwrap_err().code, "4001");
        // A bad datetime literal (e.g. an unencoded '+') is a parse error.
        assert_eq!(plan_of("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > '2025-01-01T00:00:00 01:00'").unwrap_err().code, "4000");
    }

    #[test]
    fn valid_forms() {
        let p = plan_of("select * from INVOICE where metadata.lastupdatedtime >= '2025-01-01T00:00:00Z'").unwrap();
        assert_eq!(p.entity, Entity::Invoice);
        assert_eq!((p.start, p.max), (1, 100));
        assert!(p.residual.is_empty());
        let p = plan_of("SELECT * FROM Customer WHERE Active IN (true,false) AND Metadata.CreateTime > '2020-01-01'").unwrap();
        assert_eq!(p.residual.len(), 1, "Active IN (true,false) drops the implicit filter");
        let p = plan_of("SELECT COUNT(*) FROM Item").unwrap();
        assert!(p.count);
        assert!(matches!(p.residual[0], Pred::Active([false, true])));
        plan_of("SELECT * FROM Invoice WHERE TxnDate >= '2024-01-01' AND TxnDate <= CURRENT_DATE").unwrap();
        plan_of("SELECT * FROM Invoice WHERE DocNumber IN ('1001','1002') AND CustomerRef = '3'").unwrap();
        plan_of("SELECT * FROM Customer WHERE DisplayName LIKE '%bird%' ORDERBY DisplayName DESC").unwrap();
        plan_of("SELECT * FROM Item WHERE Type = 'Service' AND UnitPrice > 10.5").unwrap();
    }

    #[test]
    fn time_ranges_with_fractions() {
        // >= x.5 s excludes x, > x.5 s excludes x; <= x.5 includes x; < x.5 includes x.
        assert_eq!(range_for(Kind::Time, Op::Ge, 10_500), (11, i64::MAX));
        assert_eq!(range_for(Kind::Time, Op::Gt, 10_500), (11, i64::MAX));
        assert_eq!(range_for(Kind::Time, Op::Le, 10_500), (i64::MIN, 11));
        assert_eq!(range_for(Kind::Time, Op::Lt, 10_500), (i64::MIN, 11));
        assert_eq!(range_for(Kind::Time, Op::Lt, 10_000), (i64::MIN, 10));
        assert_eq!(range_for(Kind::Time, Op::Eq, 10_000), (10, 11));
        assert_eq!(range_for(Kind::Time, Op::Eq, 10_500), (0, 0));
        assert_eq!(range_for(Kind::Time, Op::Ge, -1_500), (-1, i64::MAX));
    }

    #[test]
    fn like_patterns() {
        assert!(like("Amy's Bird", "amy%"));
        assert!(like("Amy's Bird", "%bird"));
        assert!(like("Amy's Bird", "%s b%"));
        assert!(!like("Amy's Bird", "bird%"));
        assert!(like("abc", "abc"));
        assert!(like("abc", "a%b%c"));
        assert!(!like("ab", "a%b%c"));
        assert_eq!(cents("10.5"), Some(1050));
        assert_eq!(cents("-0.07"), Some(-7));
        assert_eq!(cents("x"), None);
    }

    #[test]
    fn desc_prefix_keeps_ties_ascending() {
        let keys = vec![(1, 0), (2, 1), (2, 2), (3, 3), (3, 4), (3, 5)];
        assert_eq!(desc_prefix(&keys, 10), vec![3, 4, 5, 1, 2, 0]);
        assert_eq!(desc_prefix(&keys, 4), vec![3, 4, 5, 1]);
    }
}
