//! The terminal progress bar and a log writer that draws around it, so log lines and the
//! bar never overwrite each other.
//!
//! The bar measures what a user waits for: records committed (in every sink, so what an
//! interrupted run leaves behind) against the plan's count, records fetched, and requests
//! against the plan's estimate with their rate (QuickBooks meters and paces requests). Off a
//! terminal it draws nothing: indicatif hides a stderr target that is not a terminal (or whose
//! `TERM` is unset or `dumb`), and the caller passes `visible: false` then as well; logs and CI
//! get the plain log lines.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use qbo_core::backfill::Progress;
use qbo_core::read_plan::Estimate;

/// Reads how many API requests the run has sent so far.
pub type RequestCounter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How often the bar redraws on its own, so the elapsed time, the rate and the ETA move
/// between commits.
const TICK: Duration = Duration::from_millis(200);

/// What the bar shows besides its position (the records committed).
#[derive(Default)]
struct Counts {
    fetched: AtomicU64,
    committed: AtomicU64,
    /// The plan's estimate of the requests; 0 until the plan is counted.
    estimated_requests: AtomicU64,
}

#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    counts: Arc<Counts>,
    requests: RequestCounter,
}

impl Bar {
    /// This bar as the engine's progress observer.
    pub fn observer(&self) -> Option<std::sync::Arc<dyn qbo_core::backfill::Progress>> {
        Some(std::sync::Arc::new(self.clone()))
    }

    /// A bar that shows the counting of the plan, then, once the estimate is known, records
    /// committed against it. `requests` reads the client's count of API requests.
    pub fn new(visible: bool, requests: RequestCounter) -> Self {
        let bar = if visible { ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()) } else { ProgressBar::hidden() };
        let this = Bar { bar, counts: Arc::new(Counts::default()), requests };
        this.bar.set_style(this.style("{spinner} [{elapsed_precise}] counting the range: {requests}"));
        if visible {
            this.bar.enable_steady_tick(TICK);
        }
        this
    }

    fn style(&self, template: &str) -> ProgressStyle {
        let requests = Arc::clone(&self.requests);
        let counts = Arc::clone(&self.counts);
        let requests_key = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&requests_text(requests(), counts.estimated_requests.load(Ordering::Relaxed), state.elapsed()));
        };
        let counts = Arc::clone(&self.counts);
        let fetched_key = move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", HumanCount(counts.fetched.load(Ordering::Relaxed)));
        };
        let eta_key = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            // indicatif's ETA reads 0 before the first commit gives it a rate, and once the bar
            // is abandoned (an interrupted run): show that there is no estimate instead.
            let unknown = if state.is_finished() { state.len().is_some_and(|len| state.pos() < len) } else { state.pos() == 0 };
            let _ = if unknown { w.write_str("--") } else { write!(w, "{}", HumanDuration(state.eta())) };
        };
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .with_key("requests", requests_key)
            .with_key("fetched", fetched_key)
            .with_key("left", eta_key)
            .progress_chars("=> ")
    }

    /// The last state stays on the terminal: what was committed, and what it cost.
    pub fn finish(&self) {
        self.bar.finish();
        self.end_line();
    }

    /// An interrupted run: the last state stays, unfinished (its ETA was for the whole run).
    pub fn abandon(&self) {
        self.bar.abandon();
        self.end_line();
    }

    /// indicatif leaves the cursor at the end of the bar it drew: what is printed next starts
    /// on a line of its own.
    fn end_line(&self) {
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }

    /// Writes a line above the bar (or plainly, when there is no bar).
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }
}

/// `52/~105 requests, 98/min`: requests sent against the estimate, and their rate so far.
fn requests_text(done: u64, estimated: u64, elapsed: Duration) -> String {
    let rate = if elapsed.as_secs_f64() >= 1.0 { format!(", {:.0}/min", done as f64 * 60.0 / elapsed.as_secs_f64()) } else { String::new() };
    if estimated == 0 {
        format!("{done} request(s){rate}")
    } else {
        format!("{done}/~{estimated} requests{rate}")
    }
}

impl Progress for Bar {
    fn on_estimate(&self, estimate: &Estimate) {
        self.counts.estimated_requests.store(estimate.requests, Ordering::Relaxed);
        self.bar.set_length(estimate.records);
        self.bar.set_style(
            self.style("{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} records committed, {fetched} fetched, {requests}, ETA {left}"),
        );
        // The clock of the ETA starts with the read, not with the counting.
        self.bar.reset_eta();
    }

    fn on_rows(&self, _window: &str, rows: u64) {
        self.counts.fetched.fetch_add(rows, Ordering::Relaxed);
    }

    fn on_committed(&self, _window: &str, rows: u64) {
        let total = self.counts.committed.fetch_add(rows, Ordering::Relaxed) + rows;
        // Records edited during the read can be written twice: never past the plan's count.
        self.bar.set_position(total.min(self.bar.length().unwrap_or(total)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_show_the_estimate_once_known_and_a_rate_once_measurable() {
        assert_eq!(requests_text(3, 0, Duration::from_millis(500)), "3 request(s)");
        assert_eq!(requests_text(52, 105, Duration::from_secs(30)), "52/~105 requests, 104/min");
    }

    #[test]
    fn a_hidden_bar_counts_committed_rows_up_to_the_plan() {
        let bar = Bar::new(false, Arc::new(|| 7));
        let estimate = Estimate {
            entity: "invoice".into(),
            windows: 1,
            records: 10,
            streams: Vec::new(),
            count_requests: 1,
            page_requests: 3,
            closing_counts: 0,
            requests: 4,
            minutes: 0.1,
            uncounted_windows: 0,
        };
        bar.on_estimate(&estimate);
        bar.on_rows("w", 12);
        bar.on_committed("w", 6);
        assert_eq!(bar.bar.position(), 6);
        bar.on_committed("w", 6);
        assert_eq!(bar.bar.position(), 10, "an edited record written twice does not pass the plan's count");
        assert_eq!(bar.counts.fetched.load(Ordering::Relaxed), 12);
    }
}
