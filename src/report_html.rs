//! Reports as a notebook shows them (`_repr_html_`: a summary and a table of windows, every
//! value escaped) and as pandas frames (`to_pandas`, pandas imported only then).

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::report::{BackfillReport, WindowReport};

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEADERS: [&str; 8] = ["label", "start", "end", "status", "rows fetched", "rows written", "pages", "error"];

fn window_row(report: &WindowReport) -> String {
    let (w, status) = (&report.inner, crate::report::status_text(report.inner.status));
    let cells = [
        escape(&w.label),
        qbo_core::time::format_utc(w.start),
        qbo_core::time::format_utc(w.end),
        if status == "ok" { "ok".to_string() } else { format!("<b style=\"color:#b00\">{}</b>", escape(status)) },
        w.rows_fetched.to_string(),
        w.rows_written().to_string(),
        w.fetch.pages.to_string(),
        escape(w.error.as_deref().unwrap_or("")),
    ];
    format!("<tr>{}</tr>", cells.iter().map(|c| format!("<td>{c}</td>")).collect::<String>())
}

fn table<'a>(windows: impl Iterator<Item = &'a WindowReport>) -> String {
    let head: String = HEADERS.iter().map(|h| format!("<th>{h}</th>")).collect();
    let rows: String = windows.map(window_row).collect();
    format!("<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
}

pub fn window_html(w: &WindowReport) -> String {
    format!("<div><b>WindowReport</b> {}{}</div>", escape(&w.inner.label), table(std::iter::once(w)))
}

pub fn backfill_html(r: &BackfillReport) -> String {
    let failed = r.windows.iter().filter(|w| !w.is_ok()).count();
    let verdict = if failed == 0 { "ok".to_string() } else { format!("<b style=\"color:#b00\">{failed} window(s) failed</b>") };
    format!(
        "<div><b>BackfillReport</b> {}: {} record(s) in {} window(s), {} request(s) ({} retries, {} throttled), {:.1} s: {verdict}{}</div>",
        escape(&r.entity),
        r.total_rows,
        r.windows.len(),
        r.requests,
        r.retries,
        r.throttled,
        r.duration_s,
        table(r.windows.iter())
    )
}

/// One row per window, the columns of `WindowReport.to_dict()`.
pub fn windows_frame<'py>(py: Python<'py>, windows: &[WindowReport]) -> PyResult<Bound<'py, PyAny>> {
    let pandas = py.import("pandas")?;
    let rows = PyList::new(py, windows.iter().map(|w| w.to_dict(py)).collect::<PyResult<Vec<_>>>()?)?;
    let frame = pandas.getattr("DataFrame")?.call1((rows,))?;
    if windows.is_empty() {
        return Ok(frame);
    }
    // Bounds as UTC timestamps, not text.
    for column in ["start", "end"] {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("utc", true)?;
        let converted = pandas.call_method("to_datetime", (frame.get_item(column)?,), Some(&kwargs))?;
        frame.set_item(column, converted)?;
    }
    Ok(frame)
}
