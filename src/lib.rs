//! The thin PyO3 layer of qbo_rs: argument conversion, GIL release, error mapping.
//! No business logic lives here; it all lives in the pure-Rust crates under `crates/`.

#[cfg(all(unix, not(target_env = "musl")))]
mod allocator;
mod client;
mod convert;
mod emulator;
mod errors;
mod frames;
mod postgres;
mod progress;
mod read;
mod read_postgres;
mod report;
mod report_html;
mod runtime;
mod share;
mod stage;
mod sync;
mod windows;

use pyo3::prelude::*;

/// Runs the `qbo-rs` command line with `argv` (without the program name); returns the
/// exit code. Called by `qbo_rs.cli:main`.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| qbo_cli::run(argv, runtime::runtime()))
}

/// `$QBO_TOKEN_STORE`, else `$XDG_STATE_HOME/qbo_rs/tokens-<realm>.json` (Intuit's token
/// endpoint, the default) or `tokens-<realm>-<tag>.json` (any other `token_url`), else under
/// `~/.local/state`; None when not even HOME is set.
#[pyfunction]
#[pyo3(signature = (realm_id, token_url=None))]
fn default_token_store(realm_id: &str, token_url: Option<&str>) -> Option<std::path::PathBuf> {
    qbo_core::token_store::default_path(realm_id, token_url.unwrap_or(qbo_core::credentials::TOKEN_ENDPOINT))
}

/// `$QBO_LIMITER_DIR`, else `$XDG_RUNTIME_DIR/qbo_rs`, else `<temp dir>/qbo_rs-<uid>`.
#[pyfunction]
fn default_limiter_dir() -> std::path::PathBuf {
    qbo_core::limiter::machine::default_dir()
}

#[pymodule(gil_used = false)]
mod _qbo_rs {
    // Every class and function the Python face imports from `qbo_rs._qbo_rs`.
    #[pymodule_export]
    use super::{
        client::{BackfillJob, Credentials, EstimateJob, QboClient},
        default_limiter_dir, default_token_store,
        emulator::NativeEmulator,
        frames::{_read_txt, _typed_fields, _volume, RawTxt},
        postgres::PostgresWriter,
        progress::ProgressEvent,
        read::{ReadJob, RecordsRead},
        read_postgres::{_read_postgres, RawPostgres},
        report::{BackfillReport, Estimate, WindowReport},
        run_cli,
        share::{_export_share_job, ReadShare, ShareExportJob, SharePlan, SharePlanJob, ShareStageJob, StagedShare},
        stage::{_export_job, ExportJob, StageJob, StagedWindow},
        sync::{_sync_job, SyncJob, SyncReport},
        windows::{parse_instant, plan, plan_windows, BackfillPlan, Window},
    };

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // Rust log records (tracing's `log` feature) go to Python's `logging`, under the
        // "qbo_rs" logger, so they show up in Mage block logs. Cheap: no runtime, no I/O.
        // Cache logger objects but not their levels: users configure `logging` after import,
        // and a cached WARNING level would hide every INFO line from them.
        let _ = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers)?.install();
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
