//! `Credentials` and the native `QboClient`. Sync methods release the GIL for the whole
//! call; `_*_future` methods return awaitables for the Python face's `async def` twins.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use secrecy::SecretString;

use qbo_core::backfill::{run_backfill, BackfillRequest};
use qbo_core::sink::postgres::PostgresOptions;
use qbo_core::sink::{open_sinks, SinkKind, SinkOptions};
use qbo_core::stage::StageRequest;
use qbo_core::limiter::LimiterScope;
use qbo_core::{ClientConfig, Entity, FilterField};

use crate::convert;
use crate::errors::{config_error, to_py};
use crate::postgres::PostgresWriter;
use crate::report::BackfillReport;
use crate::runtime::block_on;
use crate::stage::StageJob;

/// QBO credentials. Secrets are held in Rust and never shown by `repr` or in errors.
#[pyclass(frozen, module = "qbo_rs")]
pub struct Credentials {
    pub inner: qbo_core::Credentials,
}

#[pymethods]
impl Credentials {
    #[new]
    #[pyo3(signature = (client_id, client_secret, refresh_token, realm_id, environment = "sandbox", base_url = None, token_url = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        client_id: String,
        client_secret: String,
        refresh_token: String,
        realm_id: String,
        environment: &str,
        base_url: Option<String>,
        token_url: Option<String>,
    ) -> PyResult<Self> {
        let inner = qbo_core::Credentials {
            client_id: client_id.trim().to_string(),
            client_secret: SecretString::from(client_secret.trim().to_string()),
            refresh_token: SecretString::from(refresh_token.trim().to_string()),
            realm_id: realm_id.trim().to_string(),
            environment: environment.parse().map_err(|e| to_py(py, e))?,
            api_base_url: base_url.filter(|s| !s.trim().is_empty()),
            token_url: token_url.filter(|s| !s.trim().is_empty()),
        };
        inner.validate().map_err(|e| to_py(py, e))?;
        Ok(Credentials { inner })
    }

    /// Reads QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, QBO_ENTORNO
    /// (sandbox|production), QBO_BASE_URL and QBO_TOKEN_URL from `environ` (default:
    /// `os.environ`).
    #[staticmethod]
    #[pyo3(signature = (environ = None))]
    fn from_env(py: Python<'_>, environ: Option<HashMap<String, String>>) -> PyResult<Self> {
        let environ = match environ {
            Some(e) => e,
            None => py.import("os")?.getattr("environ")?.call_method0("copy")?.extract()?,
        };
        let inner = qbo_core::Credentials::from_lookup(|k| environ.get(k).cloned()).map_err(|e| to_py(py, e))?;
        Ok(Credentials { inner })
    }

    #[getter]
    fn realm_id(&self) -> &str {
        &self.inner.realm_id
    }

    #[getter]
    fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    #[getter]
    fn environment(&self) -> &'static str {
        match self.inner.environment {
            qbo_core::Environment::Sandbox => "sandbox",
            qbo_core::Environment::Production => "production",
        }
    }

    #[getter]
    fn base_url(&self) -> String {
        self.inner.api_base()
    }

    #[getter]
    fn token_url(&self) -> String {
        self.inner.token_endpoint()
    }

    fn __repr__(&self) -> String {
        format!(
            "Credentials(client_id={:?}, client_secret='***', refresh_token='***', realm_id={:?}, environment={:?}, base_url={:?})",
            qbo_core::credentials::redact_id(&self.inner.client_id),
            self.inner.realm_id,
            self.environment(),
            self.inner.api_base()
        )
    }
}

/// The native client: pacing, OAuth and retries live here, shared by every call.
#[pyclass(module = "qbo_rs", subclass)]
pub struct QboClient {
    client: qbo_core::QboClient,
}

#[derive(Clone)]
struct BackfillArgs {
    request: BackfillRequest,
    sinks: SinkOptions,
}

/// A backfill ready to run (from `QboClient._backfill_job`): checked options and the client.
#[pyclass(frozen, module = "qbo_rs")]
pub struct BackfillJob {
    client: qbo_core::QboClient,
    args: BackfillArgs,
}

#[pymethods]
impl BackfillJob {
    /// Runs the backfill with the GIL released; Ctrl-C stops it between requests.
    fn run(&self, py: Python<'_>) -> PyResult<BackfillReport> {
        block_on(py, backfill_task(self.client.clone(), self.args.clone()))?.map_err(|e| to_py(py, e))
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, args) = (self.client.clone(), self.args.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let result = backfill_task(client, args).await;
            Python::attach(|py| result.map_err(|e| to_py(py, e)))
        })
    }

    fn __repr__(&self) -> String {
        let r = &self.args.request;
        format!("BackfillJob(entity={:?}, start={}, end={})", r.entity.slug(), r.start.to_rfc3339(), r.end.to_rfc3339())
    }
}

/// Where records go: the sink choice and what each sink needs, checked before any request.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sink_options(
    py: Python<'_>,
    sink: &str,
    data_dir: PathBuf,
    fsync: bool,
    dsn: Option<String>,
    pg_schema: &str,
    pg_table_prefix: &str,
    postgres: Option<PostgresOptions>,
) -> PyResult<SinkOptions> {
    let kind: SinkKind = sink.parse().map_err(|e| to_py(py, e))?;
    let postgres = match (kind.writes_postgres(), postgres) {
        (false, _) => None,
        (true, Some(options)) => Some(options),
        (true, None) => Some(PostgresWriter::build(py, dsn.as_deref(), pg_schema, pg_table_prefix)?),
    };
    Ok(SinkOptions { kind, data_dir, fsync, postgres })
}

async fn backfill_task(client: qbo_core::QboClient, args: BackfillArgs) -> Result<BackfillReport, qbo_core::Error> {
    let sinks = open_sinks(args.request.entity, &args.sinks).await?;
    let report = run_backfill(&client, sinks, &args.request, None).await?;
    Ok(BackfillReport::from_core(report))
}

async fn fetch_window_task(
    client: qbo_core::QboClient,
    entity: Entity,
    field: FilterField,
    window: qbo_core::Window,
    page_size: u32,
) -> Result<Vec<u8>, qbo_core::Error> {
    let mut records = qbo_core::paginate::read_window_records(&client, entity, field, &window, page_size).await?;
    // Keep only the newest version of each id, in filter order, as one JSON array.
    records.sort_by(|a, b| a.id.cmp(&b.id).then(b.version().cmp(&a.version())));
    records.dedup_by(|a, b| a.id == b.id);
    records.sort_by_key(|r| (r.last_updated_utc, r.id.parse::<u64>().unwrap_or(u64::MAX)));
    let mut out = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&r.payload);
    }
    out.push(b']');
    Ok(out)
}

fn json_loads<'py>(py: Python<'py>, bytes: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (pyo3::types::PyBytes::new(py, &bytes),))
}

#[pymethods]
impl QboClient {
    #[new]
    #[pyo3(signature = (credentials, *, requests_per_minute = 490, max_in_flight = 10, max_retries = 6, backoff_base = 1.0, timeout = 120.0, token_store = None, on_token_rotated = None, limiter_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        credentials: &Credentials,
        requests_per_minute: i64,
        max_in_flight: i64,
        max_retries: i64,
        backoff_base: f64,
        timeout: f64,
        token_store: Option<PathBuf>,
        on_token_rotated: Option<Py<PyAny>>,
        limiter_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mut config = ClientConfig::default();
        config.pacing.requests_per_minute = convert::positive_u32(py, "requests_per_minute", requests_per_minute)?;
        config.pacing.max_in_flight = convert::positive_u32(py, "max_in_flight", max_in_flight)?;
        config.retry.max_retries = u32::try_from(max_retries)
            .map_err(|_| config_error(py, format!("max_retries must be 0 or more, got {max_retries}")))?;
        if !(backoff_base.is_finite() && backoff_base > 0.0 && backoff_base <= 60.0) {
            return Err(config_error(py, format!("backoff_base must be between 0 and 60 seconds, got {backoff_base}")));
        }
        config.retry.base = Duration::from_secs_f64(backoff_base);
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(config_error(py, format!("timeout must be a positive number of seconds, got {timeout}")));
        }
        config.timeout = Duration::from_secs_f64(timeout);
        config.token_store = token_store;
        config.limiter_scope = limiter_dir.map_or(LimiterScope::Process, LimiterScope::Machine);
        config.on_rotate = on_token_rotated.map(|callback| {
            let hook: qbo_core::auth::RotationHook = Arc::new(move |rotated: &qbo_core::auth::RotatedToken| {
                use secrecy::ExposeSecret;
                Python::attach(|py| {
                    callback
                        .call1(py, (rotated.realm_id.as_str(), rotated.refresh_token.expose_secret()))
                        .map(drop)
                        // Only the exception's type: its message might quote the token.
                        .map_err(|e| format!("the callback raised {}", e.get_type(py).name().map(|n| n.to_string()).unwrap_or_default()))
                })
            });
            hook
        });
        let client = qbo_core::QboClient::new(credentials.inner.clone(), config).map_err(|e| to_py(py, e))?;
        Ok(QboClient { client })
    }

    #[getter]
    fn realm_id(&self) -> &str {
        self.client.realm_id()
    }

    /// The file through which every process on this machine shares the realm's request
    /// budget; None when this client paces its process alone.
    #[getter]
    fn budget_file(&self) -> Option<PathBuf> {
        self.client.budget_file().map(PathBuf::from)
    }

    /// `SELECT COUNT(*)` of `entity` in `[start, end)` (inactive list records included).
    #[pyo3(signature = (entity, start, end, filter_field = "LastUpdatedTime"))]
    fn count(&self, py: Python<'_>, entity: &str, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>, filter_field: &str) -> PyResult<u64> {
        let entity = convert::entity(py, entity)?;
        let field = convert::filter_field(py, filter_field)?;
        field.check_supported_by(entity).map_err(|e| to_py(py, e))?;
        let (start, end) = (convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
        if end <= start {
            return Err(config_error(py, "end must be after start"));
        }
        let statement = qbo_core::query::count_statement(entity, field, start, end);
        let client = self.client.clone();
        block_on(py, async move { client.count(entity, &statement).await })?.map_err(|e| to_py(py, e))
    }

    #[pyo3(signature = (entity, start, end, page_size = 100, filter_field = "LastUpdatedTime"))]
    fn _fetch_window_json(
        &self,
        py: Python<'_>,
        entity: &str,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        page_size: i64,
        filter_field: &str,
    ) -> PyResult<Py<PyAny>> {
        let (entity, field, window, page_size) = self.window_args(py, entity, start, end, page_size, filter_field)?;
        let client = self.client.clone();
        let bytes = block_on(py, fetch_window_task(client, entity, field, window, page_size))?.map_err(|e| to_py(py, e))?;
        Ok(json_loads(py, bytes)?.unbind())
    }

    #[pyo3(signature = (entity, start, end, page_size = 100, filter_field = "LastUpdatedTime"))]
    fn _fetch_window_future<'py>(
        &self,
        py: Python<'py>,
        entity: &str,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        page_size: i64,
        filter_field: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (entity, field, window, page_size) = self.window_args(py, entity, start, end, page_size, filter_field)?;
        let client = self.client.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let bytes = fetch_window_task(client, entity, field, window, page_size).await;
            Python::attach(|py| match bytes {
                Ok(b) => json_loads(py, b).map(Bound::unbind),
                Err(e) => Err(to_py(py, e)),
            })
        })
    }

    /// A backfill with its options parsed and checked (nothing is sent yet); the Python face
    /// runs it with `run()` or awaits `run_future()`, so the options are listed once.
    #[pyo3(signature = (entity, start, end, *, chunk_days = 50, page_size = 100, sink = "txt", data_dir = PathBuf::from("data"), filter_field = "LastUpdatedTime", max_concurrent_windows = 4, max_buffer_mb = 16, windows = None, fsync = true, dsn = None, pg_schema = "raw", pg_table_prefix = "qb_", postgres = None))]
    #[allow(clippy::too_many_arguments)]
    fn _backfill_job(
        &self,
        py: Python<'_>,
        entity: &str,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        chunk_days: i64,
        page_size: i64,
        sink: &str,
        data_dir: PathBuf,
        filter_field: &str,
        max_concurrent_windows: i64,
        max_buffer_mb: i64,
        windows: Option<Vec<String>>,
        fsync: bool,
        dsn: Option<String>,
        pg_schema: &str,
        pg_table_prefix: &str,
        postgres: Option<PyRef<'_, PostgresWriter>>,
    ) -> PyResult<BackfillJob> {
        let entity = convert::entity(py, entity)?;
        let mut request = BackfillRequest::new(entity, convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
        request.chunk_days = convert::positive_u32(py, "chunk_days", chunk_days)?;
        request.page_size = u32::try_from(page_size).unwrap_or(0);
        qbo_core::backfill::validate_page_size(request.page_size)
            .map_err(|_| config_error(py, format!("page_size must be between 1 and 1000 (QBO's MAXRESULTS limit), got {page_size}")))?;
        request.filter_field = convert::filter_field(py, filter_field)?;
        request.max_concurrent_windows = convert::positive_u32(py, "max_concurrent_windows", max_concurrent_windows)? as usize;
        request.max_buffer_bytes = u64::from(convert::positive_u32(py, "max_buffer_mb", max_buffer_mb)?) << 20;
        request.only_labels = windows;
        request.plan().map_err(|e| to_py(py, e))?;
        let sinks = sink_options(py, sink, data_dir, fsync, dsn, pg_schema, pg_table_prefix, postgres.map(|p| p.options.clone()))?;
        Ok(BackfillJob { client: self.client.clone(), args: BackfillArgs { request, sinks } })
    }

    /// A window's fetch-to-stage with its options checked (nothing is sent yet); the Python face
    /// runs it with `run()` or awaits `run_future()`.
    #[pyo3(signature = (entity, start, end, *, label = None, page_size = 100, filter_field = "LastUpdatedTime", stage_dir = PathBuf::from("data/.qbo_rs/stage"), run_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn _stage_job(
        &self,
        py: Python<'_>,
        entity: &str,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        label: Option<String>,
        page_size: i64,
        filter_field: &str,
        stage_dir: PathBuf,
        run_id: Option<String>,
    ) -> PyResult<StageJob> {
        let (entity, field, mut window, page_size) = self.window_args(py, entity, start, end, page_size, filter_field)?;
        // The label plan_windows (and so backfill) gives a window starting here.
        window.label = match label {
            Some(label) => label,
            None => qbo_core::Window::new(window.start, window.end, &format!("{}_backfill", entity.slug())).label,
        };
        let request = StageRequest { entity, field, page_size, window, stage_dir, run_id };
        request.check().map_err(|e| to_py(py, e))?;
        Ok(StageJob { client: self.client.clone(), request })
    }

    fn __repr__(&self) -> String {
        format!("QboClient(realm_id={:?})", self.client.realm_id())
    }
}

impl QboClient {
    fn window_args(
        &self,
        py: Python<'_>,
        entity: &str,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        page_size: i64,
        filter_field: &str,
    ) -> PyResult<(Entity, FilterField, qbo_core::Window, u32)> {
        let entity = convert::entity(py, entity)?;
        let field = convert::filter_field(py, filter_field)?;
        field.check_supported_by(entity).map_err(|e| to_py(py, e))?;
        let page_size_u32 = u32::try_from(page_size).unwrap_or(0);
        qbo_core::backfill::validate_page_size(page_size_u32).map_err(|e| to_py(py, e))?;
        let (start, end) = (convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
        if end <= start {
            return Err(config_error(py, "end must be after start"));
        }
        let window = qbo_core::Window::new(start, end, &format!("{}_window", entity.slug()));
        Ok((entity, field, window, page_size_u32))
    }
}

