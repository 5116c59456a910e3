//! One tokio runtime for the whole process, created on first use (never at import: Mage
//! forks worker processes, and a runtime does not survive a fork). It is
//! pyo3-async-runtimes' runtime, so the sync and async APIs share one thread pool.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// The process that first used pyo3-async-runtimes' runtime.
static ORIGIN: OnceLock<u32> = OnceLock::new();
/// A runtime built in a forked child, with that child's process id.
static FORKED: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// This process's runtime. A runtime's threads do not survive a fork (Python's
/// `multiprocessing` with the fork start method, Linux's default before 3.14): a process
/// forked after the engine ran gets a runtime of its own (the inherited one is never touched).
pub fn runtime() -> &'static Runtime {
    let pid = std::process::id();
    let shared = pyo3_async_runtimes::tokio::get_runtime();
    if *ORIGIN.get_or_init(|| pid) == pid {
        return shared;
    }
    let mut forked = FORKED.lock().unwrap_or_else(|p| p.into_inner());
    match *forked {
        Some((owner, rt)) if owner == pid => rt,
        _ => {
            let rt: &'static Runtime =
                Box::leak(Box::new(tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime for this forked process")));
            *forked = Some((pid, rt));
            rt
        }
    }
}

/// An awaitable of `fut` on the shared runtime (pyo3-async-runtimes'), refused at once in a
/// forked process, where that runtime's threads do not exist.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> pyo3::IntoPyObject<'py> + Send + 'static,
{
    check_async_usable(py)?;
    pyo3_async_runtimes::tokio::future_into_py(py, fut)
}

fn check_async_usable(py: Python<'_>) -> PyResult<()> {
    let pid = std::process::id();
    if ORIGIN.get().is_some_and(|origin| *origin != pid) {
        return Err(crate::errors::config_error(
            py,
            "the async API cannot run in a process forked after qbo_rs started (multiprocessing's fork start method): \
             use the sync API here, or the spawn or forkserver start method",
        ));
    }
    ORIGIN.get_or_init(|| pid);
    Ok(())
}

/// Runs `fut` to completion on the runtime's worker threads with the GIL released; this
/// thread only waits, waking every 200 ms to let Python deliver Ctrl-C. The work never runs
/// on this thread, so nothing it does (a long retry wait, a slow count) can keep Ctrl-C
/// waiting. Ctrl-C cancels the work (writes already committed stay committed) and waits for
/// it to unwind before raising, so a re-run never meets the interrupted one.
pub fn block_on<F, T>(py: Python<'_>, fut: F) -> PyResult<Result<T, qbo_core::Error>>
where
    F: Future<Output = Result<T, qbo_core::Error>> + Send + 'static,
    T: Send + 'static,
{
    let outcome = py.detach(|| {
        let rt = runtime();
        let mut work = rt.spawn(fut);
        rt.block_on(async {
            loop {
                tokio::select! {
                    joined = &mut work => {
                        return Ok(joined.unwrap_or_else(|e| Err(qbo_core::Error::Sink(format!("the engine's task failed: {e}")))));
                    }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if let Err(interrupted) = Python::attach(|py| py.check_signals()) {
                            work.abort();
                            let _ = tokio::time::timeout(Duration::from_secs(10), &mut work).await;
                            return Err(interrupted);
                        }
                    }
                }
            }
        })
    });
    // A Ctrl-C can land while a worker thread forwards a log event to Python's `logging`: the
    // handler's KeyboardInterrupt is then left pending on this thread. Returning a value with
    // it set would be a SystemError; raise it instead (what was committed stays committed).
    if let Some(pending) = PyErr::take(py) {
        return Err(pending);
    }
    outcome
}
