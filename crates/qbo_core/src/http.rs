//! The HTTP client of one process. A client's connections belong to the tasks of the runtime
//! that opened them; in a process forked from it (Python's `multiprocessing` with the fork
//! start method, Linux's default before 3.14) those tasks do not exist, and a request over a
//! pooled connection would wait forever. So the client remembers the process that built it
//! and a forked child gets a fresh one.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::Error;

/// Looks up Intuit's transaction id, which support asks for (spelled `intuit_tid`; some
/// proxies normalise it to `Intuit-Tid`).
pub fn intuit_tid(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get("intuit_tid").or_else(|| headers.get("intuit-tid")).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub struct Http {
    timeout: Duration,
    /// (process id, its client).
    current: Mutex<(u32, reqwest::Client)>,
}

fn build(timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .user_agent(concat!("qbo_rs/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .build()
        .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Self, Error> {
        Ok(Http { timeout, current: Mutex::new((std::process::id(), build(timeout)?)) })
    }

    /// This process's client (cheap: a handle).
    pub fn client(&self) -> Result<reqwest::Client, Error> {
        let pid = std::process::id();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != pid {
            let inherited = std::mem::replace(&mut *current, (pid, build(self.timeout)?));
            // Its connections' tasks died with the fork: dropping it could wait on them.
            std::mem::forget(inherited);
        }
        Ok(current.1.clone())
    }
}
