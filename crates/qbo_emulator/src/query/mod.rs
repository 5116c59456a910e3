//! The query language: parsing ([`parse()`]), validation and execution.

pub(crate) mod exec;
pub mod parse;

pub use exec::{DEFAULT_MAX_RESULTS, MAX_MAX_RESULTS};
pub use parse::{parse, Cond, Lit, Op, OrderKey, QueryError, Statement};

use crate::data::Table;
use exec::Plan;

/// What [`run`] appended and decided.
pub(crate) struct RunInfo {
    /// Records in the page (0 for COUNT).
    pub rows: usize,
    /// Record index chosen for an edit, if an edit was requested and a candidate exists.
    pub edit: Option<u32>,
}

/// Parses and validates a statement.
pub(crate) fn compile(statement: &str) -> Result<Plan, QueryError> {
    exec::plan(&parse(statement)?)
}

/// Runs a plan against a table and appends the `QueryResponse` object to `out`:
/// `{"Invoice":[...],"startPosition":s,"maxResults":n}`, `{}` for an empty page, or
/// `{"totalCount":n}` for COUNT. Records are copied from their pre-serialised bytes.
///
/// `edit_pick`, when set, chooses (modulo the candidate count) a record that an edit will then
/// move: one before the page (positions < STARTPOSITION), or one of the page itself when
/// STARTPOSITION is 1.
pub(crate) fn run(t: &Table, plan: &Plan, edit_pick: Option<u64>, out: &mut Vec<u8>) -> RunInfo {
    if plan.count {
        out.extend_from_slice(b"{\"totalCount\":");
        out.extend_from_slice(plan.count(t).to_string().as_bytes());
        out.push(b'}');
        return RunInfo { rows: 0, edit: None };
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
    if rows == 0 {
        out.extend_from_slice(b"{}");
        return RunInfo { rows, edit };
    }
    let bytes: usize = (a..b).map(|p| t.recs[sel.at(t, p) as usize].json.len() + 1).sum();
    out.reserve(bytes + 96);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(plan.entity.name().as_bytes());
    out.extend_from_slice(b"\":[");
    for p in a..b {
        if p > a {
            out.push(b',');
        }
        out.extend_from_slice(&t.recs[sel.at(t, p) as usize].json);
    }
    out.extend_from_slice(b"],\"startPosition\":");
    out.extend_from_slice(plan.start.to_string().as_bytes());
    out.extend_from_slice(b",\"maxResults\":");
    out.extend_from_slice(rows.to_string().as_bytes());
    out.push(b'}');
    RunInfo { rows, edit }
}
