//! The terminal progress bar and a log writer that draws around it, so log lines and the
//! bar never overwrite each other.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qbo_core::backfill::Progress;
use qbo_core::read_plan::Estimate;

/// Reads how many API requests the run has sent so far.
pub type RequestCounter = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    rows: Arc<AtomicU64>,
    requests: RequestCounter,
    estimated_requests: Arc<AtomicU64>,
}

impl Bar {
    /// A bar of records fetched against the plan's count, with an ETA and the requests spent
    /// against the estimate (`requests` reads the client's count).
    pub fn new(visible: bool, requests: RequestCounter) -> Self {
        let bar = if visible { ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} records  ETA {eta}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message("counting");
        Bar { bar, rows: Arc::new(AtomicU64::new(0)), requests, estimated_requests: Arc::new(AtomicU64::new(0)) }
    }

    fn show_requests(&self) {
        let done = (self.requests)();
        let estimated = self.estimated_requests.load(Ordering::Relaxed);
        self.bar.set_message(format!("{done} of ~{estimated} requests"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn on_estimate(&self, estimate: &Estimate) {
        self.bar.set_length(estimate.records);
        self.estimated_requests.store(estimate.requests, Ordering::Relaxed);
        self.show_requests();
    }

    fn on_rows(&self, _window: &str, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        // Records edited during the read can come twice: never past the plan's count.
        self.bar.set_position(total.min(self.bar.length().unwrap_or(total)));
        self.show_requests();
    }
}

struct SuspendingWriter {
    bar: ProgressBar,
}

impl Write for SuspendingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bar.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sends the engine's log events to stderr (INFO and up, or `QBO_RS_LOG`), around the bar.
pub fn install_logging(bar: Bar) {
    let level = std::env::var("QBO_RS_LOG").ok().and_then(|v| v.parse::<tracing::Level>().ok()).unwrap_or(tracing::Level::INFO);
    let writer = move || SuspendingWriter { bar: bar.bar.clone() };
    let subscriber = tracing_subscriber::fmt().with_max_level(level).with_target(false).with_ansi(false).with_writer(writer).finish();
    // Already installed (a second run in the same process): keep the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
