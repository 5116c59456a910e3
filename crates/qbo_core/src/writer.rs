//! A window's writer: the records of one window, buffered into batches and written to every
//! sink, in order, at most one batch in flight, within the run's memory budget.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::backfill::Progress;
use crate::budget::{Charge, MemoryBudget};
use crate::entity::Entity;
use crate::error::Error;
use crate::paginate::{FetchedRecord, PageSink};
use crate::sink::{Sink, WriteBatch, WriteOutcome};
use crate::window::Window;

pub(crate) struct WindowWriter<'a> {
    pub(crate) sinks: &'a [Arc<dyn Sink>],
    pub(crate) entity: Entity,
    pub(crate) realm_id: String,
    pub(crate) window: &'a Window,
    pub(crate) page_size: u32,
    pub(crate) ingested_at: DateTime<Utc>,
    pub(crate) progress: Option<Arc<dyn Progress>>,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) state: Mutex<WriterState>,
}

#[derive(Default)]
pub(crate) struct WriterState {
    buffer: Vec<FetchedRecord>,
    pub(crate) emitted: u64,
    pub(crate) outcomes: Vec<WriteOutcome>,
    /// The batch being written while the next one fills (at most one per window).
    in_flight: Option<InFlight>,
    /// Budget room held for the buffered records: their payload bytes.
    buffer_charge: Option<Charge>,
    /// Budget room reserved for the page being requested.
    reserved: Option<Charge>,
}

/// A batch's write, running on its own task so the window keeps fetching meanwhile. Dropped
/// unfinished (the backfill itself was cancelled), it aborts the write: the sinks see their
/// write future dropped, exactly as when a sequential write is cancelled (PostgreSQL rolls the
/// batch back; the JSON-lines store is crash-safe), and nothing keeps writing after the caller
/// has given up.
struct InFlight(tokio::task::JoinHandle<Result<Vec<WriteOutcome>, Error>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<'a> WindowWriter<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sinks: &'a [Arc<dyn Sink>],
        entity: Entity,
        realm_id: &str,
        window: &'a Window,
        page_size: u32,
        ingested_at: DateTime<Utc>,
        progress: Option<Arc<dyn Progress>>,
        budget: Arc<MemoryBudget>,
    ) -> Self {
        WindowWriter {
            sinks,
            entity,
            realm_id: realm_id.to_string(),
            window,
            page_size,
            ingested_at,
            progress,
            budget,
            state: Mutex::new(WriterState::default()),
        }
    }
}

impl WindowWriter<'_> {
    /// Takes records with the budget room they are charged to (resized to their bytes here);
    /// the caller has noted the page's size with the budget.
    pub(crate) async fn push_charged(&self, records: Vec<FetchedRecord>, mut charge: Charge) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        state.emitted += records.len() as u64;
        if let Some(p) = &self.progress {
            p.on_rows(&self.window.label, records.len() as u64);
        }
        charge.resize(records.iter().map(|r| r.payload.len() as u64).sum::<u64>());
        let buffered = state.buffer_charge.get_or_insert_with(|| self.budget.empty());
        buffered.absorb(charge);
        let buffered_bytes = buffered.bytes();
        state.buffer.extend(records);
        // Batches as large as the hungriest sink wants; each sink says why (see Sink::batch_bytes).
        let flush_bytes = self.sinks.iter().map(|s| s.batch_bytes()).max().unwrap_or(2 << 20);
        if buffered_bytes >= flush_bytes as u64 {
            self.flush(&mut state).await?;
        }
        Ok(())
    }

    /// Starts writing the buffered records, after the previous batch's write has finished.
    ///
    /// When a sink asks for it ([`Sink::overlap_writes`]), fetching and writing overlap: while
    /// batch n is written (on its own task), the window fetches the pages of batch n+1, and only
    /// waits when batch n+1 is full before batch n is written. Batches of one window are still
    /// written one at a time and in order, each to every sink in turn, so a window never has
    /// more than one transaction open per sink, and holds at most two batches in memory.
    /// Otherwise the write is awaited at once (one batch in memory).
    pub(crate) async fn flush(&self, state: &mut WriterState) -> Result<(), Error> {
        self.wait_in_flight(state).await?;
        if state.buffer.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(WriteBatch {
            entity: self.entity,
            realm_id: self.realm_id.clone(),
            window: self.window.clone(),
            page_size: self.page_size,
            ingested_at: self.ingested_at,
            records: std::mem::take(&mut state.buffer),
        });
        let sinks = self.sinks.to_vec();
        // The batch's budget room comes back when its write is over (or aborted).
        let charge = state.buffer_charge.take();
        let (progress, label) = (self.progress.clone(), self.window.label.clone());
        state.in_flight = Some(InFlight(tokio::spawn(async move {
            let _charge = charge;
            let mut outcomes = Vec::with_capacity(sinks.len());
            // The last sink gets the only reference, so it can free the fetched pages as soon
            // as it no longer needs them (the JSON-lines sink does, once its lines are built).
            let mut batch = Some(batch);
            for (i, sink) in sinks.iter().enumerate() {
                let this = if i + 1 == sinks.len() { batch.take() } else { batch.clone() };
                outcomes.push(sink.write(this.expect("a batch for every sink")).await?);
            }
            // Told here, as the commit lands, not when the window next looks at its write: a
            // progress bar then shows what is committed, not what was committed a batch ago.
            if let Some(p) = progress {
                p.on_committed(&label, outcomes.iter().map(WriteOutcome::written).min().unwrap_or(0));
            }
            Ok(outcomes)
        })));
        if !self.sinks.iter().any(|s| s.overlap_writes()) {
            // No sink wants the overlap (see Sink::overlap_writes): one batch in memory at a time.
            self.wait_in_flight(state).await?;
        }
        Ok(())
    }

    /// Waits for the batch being written, if any, and adds its outcome. Cancel-safe: cut short
    /// (a stopped read), it leaves the write in `state` for the next call to wait for, so the
    /// batch is neither aborted nor left out of the window's outcome.
    pub(crate) async fn wait_in_flight(&self, state: &mut WriterState) -> Result<(), Error> {
        let Some(in_flight) = state.in_flight.as_mut() else {
            return Ok(());
        };
        let joined = (&mut in_flight.0).await;
        state.in_flight = None;
        let outcomes = match joined {
            Ok(result) => result?,
            Err(e) => return Err(Error::Sink(format!("a batch write crashed: {e}"))),
        };
        if state.outcomes.len() < self.sinks.len() {
            state.outcomes.resize(self.sinks.len(), WriteOutcome::default());
        }
        for (total, outcome) in state.outcomes.iter_mut().zip(outcomes) {
            total.add(outcome);
        }
        Ok(())
    }

    /// Gives up the window after a failed write: drops its buffered records and their budget
    /// room (the window fails; a re-run writes it).
    pub(crate) async fn abandon(&self) {
        let mut state = self.state.lock().await;
        state.buffer.clear();
        state.buffer_charge = None;
        state.reserved = None;
        if let Err(e) = self.wait_in_flight(&mut state).await {
            tracing::debug!(target: "qbo_rs", "window {}: the batch in flight failed too: {e}", self.window.label);
        }
    }

    /// Writes what is left and waits until every batch of the window is written.
    pub(crate) async fn finish(&self, state: &mut WriterState) -> Result<(), Error> {
        self.flush(state).await?;
        self.wait_in_flight(state).await
    }
}

impl PageSink for WindowWriter<'_> {
    /// Holds budget room for the next page before it is requested. When there is none, the
    /// buffered records go to a write first, so the window waits holding only what writes
    /// give back on their own (see [`crate::budget`]: no deadlock).
    async fn before_fetch(&self) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        // A reservation whose page brought no new record.
        drop(state.reserved.take());
        let estimate = self.budget.page_estimate();
        if let Some(charge) = self.budget.try_reserve(estimate) {
            state.reserved = Some(charge);
            return Ok(());
        }
        self.flush(&mut state).await?;
        state.reserved = Some(self.budget.reserve(estimate).await);
        Ok(())
    }

    /// Takes a page's records, charged with the room reserved for the page.
    async fn accept(&self, records: Vec<FetchedRecord>) -> Result<(), Error> {
        self.budget.note_page(records.iter().map(|r| r.payload.len() as u64).sum());
        let reserved = self.state.lock().await.reserved.take().unwrap_or_else(|| self.budget.empty());
        self.push_charged(records, reserved).await
    }
}
