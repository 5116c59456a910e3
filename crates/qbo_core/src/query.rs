//! Building the few QBO statements we send. Every value is rendered by this module as a
//! quoted literal; nothing the user types reaches a statement unescaped.

use chrono::{DateTime, Utc};

use crate::entity::{Entity, FilterField};
use crate::time::qbo_literal;

/// QBO's hard ceiling for MAXRESULTS (a larger value is a 4001 error, not a silent cap).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The minor version every request sends (Intuit retired 1–74 on 2025-08-01).
pub const MINOR_VERSION: u32 = 75;

/// A quoted QBO string literal: backslash-escapes quotes and backslashes
/// (`'Amy\'s Bird Sanctuary'`, as Intuit's query docs show).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // Control characters have no business in a literal; dropping them keeps the
            // statement on one line.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A literal for the filter field: a datetime for MetaData times, a date for TxnDate.
pub fn bound_literal(field: FilterField, t: DateTime<Utc>) -> String {
    match field {
        FilterField::TxnDate => quote(&t.format("%Y-%m-%d").to_string()),
        _ => quote(&qbo_literal(t)),
    }
}

/// The WHERE clause shared by SELECT and COUNT: `[lower, upper)` on the filter field,
/// plus `Active IN (true,false)` for name lists so inactive records are not hidden.
pub fn where_clause(entity: Entity, field: FilterField, lower: &str, lower_op: &str, upper: Option<&str>) -> String {
    let prop = field.qbo_property();
    let mut clause = format!("WHERE {prop} {lower_op} {lower}");
    if let Some(upper) = upper {
        clause.push_str(&format!(" AND {prop} < {upper}"));
    }
    if entity.is_name_list() {
        clause.push_str(" AND Active IN (true,false)");
    }
    clause
}

pub fn count_statement(entity: Entity, field: FilterField, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!("SELECT COUNT(*) FROM {} {}", entity.qbo_name(), where_clause(entity, field, &bound_literal(field, from), ">=", Some(&bound_literal(field, to))))
}

/// COUNT of the records sharing one exact filter value: how we check that a tie group
/// read with offsets did not shrink under us.
pub fn count_tie_statement(entity: Entity, field: FilterField, tie: &str) -> String {
    format!("SELECT COUNT(*) FROM {} {}", entity.qbo_name(), where_clause(entity, field, &quote(tie), "=", None))
}

/// One keyset page: everything after `lower` (`>=` it on the first page, `>` it once a page
/// has ended there), before `to`, in filter order, from the first match.
pub fn page_statement(entity: Entity, field: FilterField, lower: &str, lower_op: &str, to: DateTime<Utc>, max_results: u32) -> String {
    format!(
        "SELECT * FROM {} {} ORDERBY {} STARTPOSITION 1 MAXRESULTS {}",
        entity.qbo_name(),
        where_clause(entity, field, lower, lower_op, Some(&bound_literal(field, to))),
        field.qbo_property(),
        max_results
    )
}

/// A page of one tie group: every record whose filter value equals `tie` exactly.
pub fn tie_page_statement(entity: Entity, field: FilterField, tie: &str, start_position: u64, max_results: u32) -> String {
    format!(
        "SELECT * FROM {} {} ORDERBY {} STARTPOSITION {} MAXRESULTS {}",
        entity.qbo_name(),
        where_clause(entity, field, &quote(tie), "=", None),
        field.qbo_property(),
        start_position,
        max_results
    )
}

/// The records among `ids` that exist (inactive name-list records included): how a deletion is
/// confirmed before it is recorded. `Id` accepts only `=` and `IN` in QuickBooks' query language.
pub fn ids_statement(entity: Entity, ids: &[&str]) -> String {
    let list: Vec<String> = ids.iter().map(|id| quote(id)).collect();
    let active = if entity.is_name_list() { " AND Active IN (true,false)" } else { "" };
    format!("SELECT * FROM {} WHERE Id IN ({}){active} STARTPOSITION 1 MAXRESULTS {MAX_PAGE_SIZE}", entity.qbo_name(), list.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quotes_are_escaped() {
        assert_eq!(quote("Amy's Bird"), r"'Amy\'s Bird'");
        assert_eq!(quote(r"a\' OR 1=1"), r"'a\\\' OR 1=1'");
        assert_eq!(quote("line\nbreak"), "'linebreak'");
    }

    #[test]
    fn ids_are_quoted_and_name_lists_include_inactive() {
        assert_eq!(ids_statement(Entity::Invoice, &["1", "2"]), "SELECT * FROM Invoice WHERE Id IN ('1','2') STARTPOSITION 1 MAXRESULTS 1000");
        assert_eq!(
            ids_statement(Entity::Item, &["o'k"]),
            r"SELECT * FROM Item WHERE Id IN ('o\'k') AND Active IN (true,false) STARTPOSITION 1 MAXRESULTS 1000"
        );
    }

    #[test]
    fn name_lists_include_inactive() {
        let a = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let b = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let s = count_statement(Entity::Customer, FilterField::LastUpdatedTime, a, b);
        assert_eq!(
            s,
            "SELECT COUNT(*) FROM Customer WHERE MetaData.LastUpdatedTime >= '2025-01-01T00:00:00+00:00' \
             AND MetaData.LastUpdatedTime < '2025-02-01T00:00:00+00:00' AND Active IN (true,false)"
        );
        let p = page_statement(Entity::Invoice, FilterField::TxnDate, &bound_literal(FilterField::TxnDate, a), ">=", b, 100);
        assert_eq!(
            p,
            "SELECT * FROM Invoice WHERE TxnDate >= '2025-01-01' AND TxnDate < '2025-02-01' \
             ORDERBY TxnDate STARTPOSITION 1 MAXRESULTS 100"
        );
    }
}
