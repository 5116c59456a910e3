//! One error type for the whole engine. The binding maps every variant to a Python
//! exception class with an exhaustive `match`, so adding a variant without deciding its
//! Python class fails to compile. Messages say what to do next and never carry a token.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to QBO, kept apart so callers can tell "retry later" from
/// "fix your credentials" from "fix your query".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input caught before any request or write.
    #[error("{0}")]
    Config(String),

    /// OAuth failed: invalid_grant, invalid_client, a 401 that survives one refresh, or 403.
    #[error("{message}{}", tid_suffix(.intuit_tid))]
    Auth { message: String, intuit_tid: Option<String> },

    /// The token store could not be read or written.
    #[error("{0}")]
    TokenStore(String),

    /// QBO kept answering 429 after every retry.
    #[error("{message}{}", tid_suffix(.intuit_tid))]
    RateLimited { message: String, intuit_tid: Option<String>, attempts: u32 },

    /// 5xx, timeouts, resets or malformed bodies that outlived every retry.
    #[error("{message}{}", tid_suffix(.intuit_tid))]
    Server { message: String, status: Option<u16>, intuit_tid: Option<String>, attempts: u32 },

    /// QBO rejected the request (400 ValidationFault): retrying cannot help.
    #[error("QBO rejected the query ({code}): {message}{}{}", detail_suffix(.detail), tid_suffix(.intuit_tid))]
    Validation { code: String, message: String, detail: Option<String>, intuit_tid: Option<String> },

    /// A 2xx body that is not the shape QBO documents.
    #[error("{0}")]
    Decode(String),

    /// Writing the RAW layer failed; nothing partial is visible (see the sink docs).
    #[error("{0}")]
    Sink(String),

    /// Rows fetched, counted and written disagree for a window.
    #[error("{0}")]
    Integrity(String),

    /// The plan needs more requests than the caller allowed (`max_requests`); nothing was
    /// read or written.
    #[error("{message}")]
    OverBudget { message: String, estimate: Box<crate::read_plan::Estimate> },

    /// The caller gave up (Ctrl-C in Python, a dropped future).
    #[error("cancelled")]
    Cancelled,
}

fn tid_suffix(tid: &Option<String>) -> String {
    tid.as_ref().map(|t| format!(" (intuit_tid {t})")).unwrap_or_default()
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_ref().map(|d| format!(" — {d}")).unwrap_or_default()
}

impl Error {
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

impl From<qbo_jsonl::StoreError> for Error {
    fn from(err: qbo_jsonl::StoreError) -> Self {
        Error::Sink(err.to_string())
    }
}

/// Retry hint parsed from a `Retry-After` header.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
