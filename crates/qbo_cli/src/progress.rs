//! The terminal progress bar and a log writer that draws around it, so log lines and the
//! bar never overwrite each other.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qbo_core::backfill::{Progress, WindowReport};
use qbo_core::Window;

#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    rows: Arc<AtomicU64>,
}

impl Bar {
    pub fn new(visible: bool) -> Self {
        let bar = if visible { ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} windows  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Bar { bar, rows: Arc::new(AtomicU64::new(0)) }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn on_plan(&self, windows: &[Window]) {
        self.bar.set_length(windows.len() as u64);
    }

    fn on_rows(&self, _window: &str, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        self.bar.set_message(format!("{total} rows"));
    }

    fn on_window_done(&self, _report: &WindowReport) {
        self.bar.inc(1);
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
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer)
        .finish();
    // Already installed (a second run in the same process): keep the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
