//! The query language: parsing ([`parse`]), validation and execution.

pub(crate) mod exec;
pub mod parse;

pub use exec::{DEFAULT_MAX_RESULTS, MAX_MAX_RESULTS};
pub use parse::{parse, Cond, Lit, Op, OrderKey, QueryError, Statement};

use crate::data::Table;
use exec::Plan;

/// What a query produced.
pub(crate) enum Output {
    /// `{"QueryResponse":{"totalCount":n},"time":..}`
    Count(usize),
    /// A full response body; `rows` records; `edit` = record index chosen for an edit.
    Page { body: Vec<u8>, rows: usize, edit: Option<u32> },
}

/// Parses and validates a statement.
pub(crate) fn compile(statement: &str) -> Result<Plan, QueryError> {
    exec::plan(&parse(statement)?)
}

/// Runs a plan against a table. `edit_pick`, when set, chooses (modulo the candidate count) a
/// record that an edit will then move: one before the page (positions < STARTPOSITION), or one
/// of the page itself when STARTPOSITION is 1.
pub(crate) fn run(t: &Table, plan: &Plan, time: &str, edit_pick: Option<u64>) -> Output {
    if plan.count {
        return Output::Count(plan.count(t));
    }
    let s0 = plan.start - 1;
    let need = s0.saturating_add(plan.max);
    let sel = plan.select(t, need);
    let total = sel.len();
    let (a, b) = (s0.min(total), need.min(total));
    let edit = edit_pick.and_then(|r| {
        let (lo, hi) = if s0 > 0 { (0, s0.min(total)) } else { (a, b) };
        (hi > lo).then(|| sel.at(t, lo + (r % (hi - lo) as u64) as usize))
    });
    let rows = b - a;
    let mut body;
    if rows == 0 {
        body = Vec::with_capacity(64);
        body.extend_from_slice(b"{\"QueryResponse\":{},\"time\":\"");
    } else {
        let name = plan.entity.name();
        let bytes: usize = (a..b).map(|p| t.recs[sel.at(t, p) as usize].json.len() + 1).sum();
        body = Vec::with_capacity(bytes + 128);
        body.extend_from_slice(b"{\"QueryResponse\":{\"");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\":[");
        for p in a..b {
            if p > a {
                body.push(b',');
            }
            body.extend_from_slice(&t.recs[sel.at(t, p) as usize].json);
        }
        body.extend_from_slice(b"],\"startPosition\":");
        body.extend_from_slice(plan.start.to_string().as_bytes());
        body.extend_from_slice(b",\"maxResults\":");
        body.extend_from_slice(rows.to_string().as_bytes());
        body.extend_from_slice(b"},\"time\":\"");
    }
    body.extend_from_slice(time.as_bytes());
    body.extend_from_slice(b"\"}");
    Output::Page { body, rows, edit }
}
