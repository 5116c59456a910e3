//! What a backfill (or a stage step) did, window by window, and the checks that decide it:
//! rows fetched vs QBO's count vs rows each sink now holds, with the runbook's log lines.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::client::RequestCounts;
use crate::entity::Entity;
use crate::paginate::WindowFetch;
use crate::read_plan::Estimate;
use crate::sink::{Sink, WriteOutcome};
use crate::window::Window;
use crate::writer::WriterState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    Ok,
    Failed,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SinkReport {
    pub sink: String,
    pub target: String,
    pub outcome: WriteOutcome,
}

#[derive(Debug, Clone)]
pub struct WindowReport {
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: WindowStatus,
    /// Distinct records in the window that were fetched.
    pub rows_fetched: u64,
    /// Records handed to the sinks (an id edited during the read can be handed over twice).
    pub rows_emitted: u64,
    pub sinks: Vec<SinkReport>,
    pub fetch: WindowFetch,
    pub error: Option<String>,
    pub duration: Duration,
}

impl WindowReport {
    pub fn rows_written(&self) -> u64 {
        self.sinks.iter().map(|s| s.outcome.written()).min().unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub struct BackfillReport {
    pub entity: Entity,
    pub windows: Vec<WindowReport>,
    pub duration: Duration,
    /// Requests by kind (`requests.api_calls()` is what Intuit meters).
    pub requests: RequestCounts,
    /// What the plan said it would cost before reading (None for a staged window).
    pub estimate: Option<Estimate>,
    /// What reading found that no plan foresees.
    pub read: ReadStats,
    /// The most bytes of fetched records held in memory at once (see [`crate::budget`]).
    pub peak_buffer_bytes: u64,
}

impl BackfillReport {
    pub fn total_rows(&self) -> u64 {
        self.windows.iter().map(|w| w.rows_fetched).sum()
    }

    /// Rows every sink now holds from this run (each window's [`WindowReport::rows_written`]).
    pub fn rows_written(&self) -> u64 {
        self.windows.iter().map(WindowReport::rows_written).sum()
    }

    pub fn failed(&self) -> Vec<&WindowReport> {
        self.windows.iter().filter(|w| w.status == WindowStatus::Failed).collect()
    }

    pub fn ok(&self) -> bool {
        self.failed().is_empty()
    }
}

/// What the reads found beyond the plan: why requests can exceed the estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Seconds holding more than half a page of records, read as groups by offset.
    pub tie_groups: u64,
    /// The counts and pages those groups cost.
    pub tie_requests: u64,
    /// Streams read again because they came up short of their count.
    pub rereads: u64,
}

pub(crate) fn sink_reports(sinks: &[Arc<dyn Sink>], state: &WriterState) -> Vec<SinkReport> {
    sinks
        .iter()
        .enumerate()
        .map(|(i, s)| SinkReport { sink: s.name().to_string(), target: s.target(), outcome: state.outcomes.get(i).copied().unwrap_or_default() })
        .collect()
}

/// The per-window quality gate: rows fetched vs COUNT(*) vs rows written.
pub(crate) fn validate_window(report: &mut WindowReport) {
    let mut alerts = fetch_alerts(report);
    alerts.extend(write_alerts(report));
    conclude(report, alerts);
}

/// What the read found: the runbook's `Rango … -> N filas` line, an empty-window warning,
/// and an alert when QBO counts more rows than were fetched.
pub(crate) fn fetch_alerts(report: &WindowReport) -> Vec<String> {
    log_rango(report);
    if report.rows_fetched == 0 {
        tracing::warn!(target: "qbo_rs", "window {} returned 0 rows: confirm it is a period without activity", report.label);
    }
    let mut alerts = Vec::new();
    if let Some(server) = report.fetch.server_count {
        if report.rows_fetched < server {
            alerts.push(format!("QBO counts {server} rows in the window but only {} were fetched", report.rows_fetched));
        }
    }
    alerts
}

/// The runbook's line for one window.
pub(crate) fn log_rango(report: &WindowReport) {
    tracing::info!(target: "qbo_rs", "Rango {} a {} -> {} filas", report.start_text(), report.end_text(), report.rows_fetched);
}

/// Rows handed to each sink vs rows the sink now holds (rows fetched vs rows upserted).
pub(crate) fn write_alerts(report: &WindowReport) -> Vec<String> {
    let mut alerts = Vec::new();
    for sink in &report.sinks {
        let written = sink.outcome.written();
        if report.rows_emitted > 0 && written == 0 {
            alerts.push(format!("{} rows fetched but 0 written to {}", report.rows_emitted, sink.target));
        } else if written != report.rows_emitted {
            alerts.push(format!("{} rows fetched but {written} written to {}", report.rows_emitted, sink.target));
        }
    }
    alerts
}

/// Logs the alerts (or the edited-during-read note) and fails the window on any alert.
pub(crate) fn conclude(report: &mut WindowReport, alerts: Vec<String>) {
    if alerts.is_empty() {
        if report.fetch.moved_out > 0 {
            tracing::info!(target: "qbo_rs", "window {}: {} record(s) were edited during the read and now belong to a later window", report.label, report.fetch.moved_out);
        }
    } else {
        for alert in &alerts {
            tracing::error!(target: "qbo_rs", "Validation: [ALERT] window {}: {alert}", report.label);
        }
        report.status = WindowStatus::Failed;
        report.error = Some(alerts.join("; "));
    }
}

impl WindowReport {
    pub fn start_text(&self) -> String {
        Window { start: self.start, end: self.end, label: String::new() }.start_text()
    }

    pub fn end_text(&self) -> String {
        Window { start: self.start, end: self.end, label: String::new() }.end_text()
    }
}
