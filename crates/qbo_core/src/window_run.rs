//! One window read alone and written to the sinks (a stage's fetch, and windows re-run by label).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::backfill::Progress;
use crate::budget::MemoryBudget;
use crate::client::QboClient;
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::paginate::{WindowFetch, WindowReader};
use crate::report::{sink_reports, validate_window, WindowReport, WindowStatus};
use crate::sink::Sink;
use crate::window::Window;
use crate::writer::WindowWriter;

/// How to read one window: what, by which field, in pages of what size, within which budget.
#[derive(Debug, Clone)]
pub(crate) struct ReadSpec {
    pub(crate) entity: Entity,
    pub(crate) field: FilterField,
    pub(crate) page_size: u32,
    pub(crate) budget: Arc<MemoryBudget>,
}

/// Reads one window and writes it to `sinks`, stamping every line `ingested_at`.
pub(crate) async fn run_window(
    client: &QboClient,
    sinks: &[Arc<dyn Sink>],
    spec: ReadSpec,
    window: Window,
    ingested_at: DateTime<Utc>,
    progress: Option<Arc<dyn Progress>>,
) -> WindowReport {
    let ReadSpec { entity, field, page_size, budget } = spec;
    let started = Instant::now();
    let writer = WindowWriter::new(sinks, entity, client.realm_id(), &window, page_size, ingested_at, progress, budget);
    let result = async {
        let fetch = WindowReader::new(client, entity, field, &window, page_size, &writer).run().await?;
        let mut state = writer.state.lock().await;
        writer.finish(&mut state).await?;
        Ok::<_, Error>(fetch)
    }
    .await;
    if result.is_err() {
        // The window failed (fetch or write): let a batch already being written finish, so that
        // what is committed and what the report counts agree.
        let mut state = writer.state.lock().await;
        if let Err(e) = writer.wait_in_flight(&mut state).await {
            tracing::debug!(target: "qbo_rs", "window {}: the batch in flight failed too: {e}", window.label);
        }
    }
    let state = writer.state.into_inner();
    let sink_reports = sink_reports(sinks, &state);
    let mut report = WindowReport {
        label: window.label.clone(),
        start: window.start,
        end: window.end,
        status: WindowStatus::Ok,
        rows_fetched: 0,
        rows_emitted: state.emitted,
        sinks: sink_reports,
        fetch: WindowFetch::default(),
        error: None,
        duration: started.elapsed(),
    };
    match result {
        Ok(fetch) => {
            report.rows_fetched = fetch.records;
            report.fetch = fetch;
            validate_window(&mut report);
        }
        Err(e) => {
            report.status = WindowStatus::Failed;
            tracing::error!(target: "qbo_rs", "window {} failed: {e}", window.label);
            report.error = Some(e.to_string());
        }
    }
    report
}
