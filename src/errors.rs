//! qbo_core errors become the Python classes of `qbo_rs.exceptions` (defined in Python so
//! they can use multiple inheritance — `ConfigError` is also a `ValueError` — and carry
//! attributes). The `match` has no wildcard arm: a new core variant must pick its class.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use qbo_core::Error;

fn exceptions(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE.get_or_try_init(py, || PyModule::import(py, "qbo_rs.exceptions").map(Bound::unbind)).map(|m| m.bind(py))
}

fn raise<'py>(py: Python<'py>, class: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    let built = exceptions(py).and_then(|m| m.getattr(class)).and_then(|cls| cls.call1(args));
    match built {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::Config(_) => raise(py, "ConfigError", (message,)),
        Error::Auth { intuit_tid, .. } => raise(py, "AuthError", (message, intuit_tid)),
        Error::TokenStore(_) => raise(py, "TokenStoreError", (message,)),
        Error::RateLimited { intuit_tid, attempts, .. } => raise(py, "RateLimitError", (message, Some(429u16), intuit_tid, attempts)),
        Error::Server { status, intuit_tid, attempts, .. } => raise(py, "ServerError", (message, status, intuit_tid, attempts)),
        Error::Validation { code, detail, intuit_tid, .. } => raise(py, "QueryValidationError", (message, code, detail, intuit_tid)),
        Error::Decode(_) => raise(py, "DecodeError", (message,)),
        Error::Sink(_) => raise(py, "SinkError", (message,)),
        Error::Integrity(_) => raise(py, "IntegrityError", (message,)),
        Error::OverBudget { estimate, .. } => match Py::new(py, crate::report::Estimate { inner: *estimate }) {
            Ok(estimate) => raise(py, "RequestBudgetError", (message, estimate)),
            Err(e) => e,
        },
        Error::Cancelled => pyo3::exceptions::PyKeyboardInterrupt::new_err("cancelled"),
    }
}

/// Shorthand for argument errors raised by the binding itself.
pub fn config_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py(py, Error::Config(message.into()))
}

/// An error on its way to Python, from the core or from Python itself: binding functions
/// return [`BindResult`], so `?` works on both, and PyO3 raises a core error as its class of
/// `qbo_rs.exceptions`.
pub enum BindError {
    Core(Error),
    Python(PyErr),
}

pub type BindResult<T> = Result<T, BindError>;

impl From<Error> for BindError {
    fn from(err: Error) -> Self {
        BindError::Core(err)
    }
}

impl From<PyErr> for BindError {
    fn from(err: PyErr) -> Self {
        BindError::Python(err)
    }
}

impl From<BindError> for PyErr {
    fn from(err: BindError) -> Self {
        match err {
            BindError::Core(err) => Python::attach(|py| to_py(py, err)),
            BindError::Python(err) => err,
        }
    }
}
