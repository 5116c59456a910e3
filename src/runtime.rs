//! One tokio runtime for the whole process, created on first use (never at import: Mage
//! forks worker processes, and a runtime does not survive a fork). It is
//! pyo3-async-runtimes' runtime, so the sync and async APIs share one thread pool.

use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

pub fn runtime() -> &'static Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut` to completion with the GIL released, waking every 200 ms to let Python
/// deliver Ctrl-C (which drops the future: writes already committed stay committed).
pub fn block_on<F, T>(py: Python<'_>, fut: F) -> PyResult<Result<T, qbo_core::Error>>
where
    F: Future<Output = Result<T, qbo_core::Error>> + Send,
    T: Send,
{
    py.detach(|| {
        runtime().block_on(async {
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    out = &mut fut => return Ok(out),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })
}
