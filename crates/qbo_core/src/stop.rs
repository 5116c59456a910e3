//! A request to stop a backfill early and cleanly (the command line's first Ctrl-C): no new
//! request is sent, requests in flight are dropped, and every batch already being written is
//! written to the end and counted, so what the run reports as committed is exactly what the
//! sinks hold. Dropping the backfill's future instead (Python's Ctrl-C) is quicker but cannot
//! say what the batches in flight did.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct StopSignal(Arc<watch::Sender<bool>>);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Arc::new(watch::channel(false).0))
    }
}

impl StopSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        StopSignal::default()
    }

    /// Asks every task watching this signal to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`StopSignal::stop`] has been called (at once if it has been already).
    pub async fn stopped(&self) {
        let mut watcher = self.0.subscribe();
        // Err only when the sender is gone, and `self` holds it.
        let _ = watcher.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_reaches_every_clone_whether_it_waits_already_or_later() {
        let signal = StopSignal::new();
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.stopped().await }
        });
        assert!(!signal.is_stopped());
        signal.clone().stop();
        waiting.await.unwrap();
        assert!(signal.is_stopped());
        signal.stopped().await;
    }
}
