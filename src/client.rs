//! `Credentials` and the native `QboClient`. Sync methods release the GIL for the whole
//! call; `_*_future` methods return awaitables for the Python face's `async def` twins.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use secrecy::SecretString;

use chrono::{DateTime, Utc};
use qbo_core::backfill::{run_backfill, BackfillReport as CoreReport, BackfillRequest, Progress};
use qbo_core::client::ClientOptions;
use qbo_core::read_plan::ReadPlan;
use qbo_core::sink::{open_sinks, SinkConfig, SinkOptions};
use qbo_core::stage::StageRequest;

use crate::convert;
use crate::errors::{config_error, BindError, BindResult};
use crate::progress::PyProgress;
use crate::read::ReadJob;
use crate::report::{BackfillReport, Estimate};
use crate::runtime::block_on;
use crate::share::SharePlanJob;
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
        client_id: String,
        client_secret: String,
        refresh_token: String,
        realm_id: String,
        environment: &str,
        base_url: Option<String>,
        token_url: Option<String>,
    ) -> BindResult<Self> {
        let inner = qbo_core::Credentials {
            client_id: client_id.trim().to_string(),
            client_secret: SecretString::from(client_secret.trim().to_string()),
            refresh_token: SecretString::from(refresh_token.trim().to_string()),
            realm_id: realm_id.trim().to_string(),
            environment: environment.parse()?,
            api_base_url: base_url.filter(|s| !s.trim().is_empty()),
            token_url: token_url.filter(|s| !s.trim().is_empty()),
        };
        inner.validate()?;
        Ok(Credentials { inner })
    }

    /// Reads QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, QBO_ENTORNO
    /// (sandbox|production), QBO_BASE_URL and QBO_TOKEN_URL from `environ` (default:
    /// `os.environ`).
    #[staticmethod]
    #[pyo3(signature = (environ = None))]
    fn from_env(py: Python<'_>, environ: Option<HashMap<String, String>>) -> BindResult<Self> {
        let environ = match environ {
            Some(e) => e,
            None => py.import("os")?.getattr("environ")?.call_method0("copy")?.extract()?,
        };
        let inner = qbo_core::Credentials::from_lookup(|k| environ.get(k).cloned())?;
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
    /// The `on_progress` callable, if any.
    on_progress: Option<Py<PyAny>>,
}

impl BackfillJob {
    /// The run's task, with a progress forwarder of its own (its counts start now).
    fn task(&self, py: Python<'_>) -> impl std::future::Future<Output = Result<CoreReport, qbo_core::Error>> + Send + 'static {
        let progress = self.on_progress.as_ref().map(|callback| PyProgress::forwarding(callback.clone_ref(py), &self.client));
        backfill_task(self.client.clone(), self.args.clone(), progress)
    }
}

#[pymethods]
impl BackfillJob {
    /// Runs the backfill with the GIL released; Ctrl-C stops it between requests.
    fn run(&self, py: Python<'_>) -> BindResult<BackfillReport> {
        let report = block_on(py, self.task(py))??;
        Ok(BackfillReport::from_core(py, report)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let task = self.task(py);
        crate::runtime::future_into_py(py, async move {
            let result = task.await;
            Python::attach(|py| BackfillReport::from_core(py, result.map_err(BindError::from)?))
        })
    }

    fn __repr__(&self) -> String {
        let r = &self.args.request;
        format!("BackfillJob(entity={:?}, start={}, end={})", r.entity.slug(), r.start.to_rfc3339(), r.end.to_rfc3339())
    }
}

/// A backfill's plan to count (from `QboClient._estimate_job`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct EstimateJob {
    client: qbo_core::QboClient,
    request: BackfillRequest,
}

async fn estimate_task(client: qbo_core::QboClient, request: BackfillRequest) -> Result<qbo_core::read_plan::Estimate, qbo_core::Error> {
    let windows = request.plan()?;
    let plan = ReadPlan::make(&client, request.entity, request.filter_field, request.page_size, windows, request.max_concurrent_windows).await;
    if let Some((_, error)) = plan.uncounted.first() {
        return Err(qbo_core::Error::Sink(format!("counting failed: {error}")));
    }
    Ok(plan.estimate(client.requests_per_minute()))
}

#[pymethods]
impl EstimateJob {
    /// Counts with the GIL released (COUNT requests only).
    fn run(&self, py: Python<'_>) -> BindResult<Estimate> {
        let inner = block_on(py, estimate_task(self.client.clone(), self.request.clone()))??;
        Ok(Estimate { inner })
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, request) = (self.client.clone(), self.request.clone());
        crate::runtime::future_into_py(py, async move {
            let inner = estimate_task(client, request).await.map_err(BindError::from)?;
            Ok(Estimate { inner })
        })
    }
}

async fn backfill_task(client: qbo_core::QboClient, args: BackfillArgs, progress: Option<Arc<dyn Progress>>) -> Result<CoreReport, qbo_core::Error> {
    let sinks = open_sinks(args.request.entity, &args.sinks).await?;
    run_backfill(&client, sinks, &args.request, progress).await
}

async fn fetch_window_task(client: qbo_core::QboClient, read: StageRequest) -> Result<Vec<u8>, qbo_core::Error> {
    let StageRequest { entity, field, window, page_size, .. } = read;
    qbo_core::paginate::read_window_json(&client, entity, field, &window, page_size).await
}

fn json_loads<'py>(py: Python<'py>, bytes: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (pyo3::types::PyBytes::new(py, &bytes),))
}

#[pymethods]
impl QboClient {
    /// Options and defaults: the core's `ClientOptions` (`token_store` and `limiter_dir` take
    /// `"auto"`, their default, None or a path), plus `on_token_rotated`, a callable.
    #[new]
    #[pyo3(signature = (credentials, **options))]
    fn new(py: Python<'_>, credentials: &Credentials, options: Option<&Bound<'_, PyDict>>) -> BindResult<Self> {
        let mut client_options = ClientOptions::new(&credentials.inner);
        let mut kwargs = convert::Kwargs::new(py, options)?;
        let on_token_rotated = kwargs.take(&["on_token_rotated"]).filter(|v| !v.is_none()).map(Bound::unbind);
        kwargs.fill(&mut client_options)?.finish()?;
        let mut config = client_options.finish()?;
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
        let client = qbo_core::QboClient::new(credentials.inner.clone(), config)?;
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
    fn count(&self, py: Python<'_>, entity: &str, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>, filter_field: &str) -> BindResult<u64> {
        let entity = convert::entity(entity)?;
        let field = convert::filter_field(filter_field)?;
        field.check_supported_by(entity)?;
        let (start, end) = (convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
        if end <= start {
            return Err(config_error(py, "end must be after start").into());
        }
        let statement = qbo_core::query::count_statement(entity, field, start, end);
        let client = self.client.clone();
        block_on(py, async move { client.count(entity, &statement).await })?.map_err(BindError::from)
    }

    /// One window's records as QBO payload dicts. Options: `page_size`, `filter_field`
    /// (the core's defaults, as for a stage).
    #[pyo3(signature = (entity, start, end, **options))]
    fn _fetch_window_json(&self, py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<Opts<'_, '_>>) -> BindResult<Py<PyAny>> {
        let bytes = block_on(py, fetch_window_task(self.client.clone(), window_read(py, entity, start, end, options)?))??;
        Ok(json_loads(py, bytes)?.unbind())
    }

    /// The same, as an awaitable.
    #[pyo3(signature = (entity, start, end, **options))]
    fn _fetch_window_future<'py>(
        &self,
        py: Python<'py>,
        entity: &str,
        start: Arg<'_, '_>,
        end: Arg<'_, '_>,
        options: Option<Opts<'_, '_>>,
    ) -> BindResult<Bound<'py, PyAny>> {
        let task = fetch_window_task(self.client.clone(), window_read(py, entity, start, end, options)?);
        Ok(crate::runtime::future_into_py(py, async move {
            let bytes = task.await.map_err(BindError::from)?;
            Python::attach(|py| json_loads(py, bytes).map(Bound::unbind))
        })?)
    }

    /// A backfill with its options parsed and checked (nothing is sent yet); the Python face
    /// runs it with `run()` or awaits `run_future()`. The options and their defaults are the
    /// core's (`BackfillRequest`, `SinkConfig`, plus `postgres`, a `PostgresWriter`, and
    /// `on_progress`, a callable given each `ProgressEvent`).
    #[pyo3(signature = (entity, start, end, **options))]
    fn _backfill_job(&self, py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<Opts<'_, '_>>) -> BindResult<BackfillJob> {
        let (mut request, mut kwargs) = range_call(py, entity, start, end, options, BackfillRequest::new)?;
        let on_progress = take_on_progress(&mut kwargs);
        let mut sinks = SinkConfig { postgres: convert::postgres_target(py, kwargs.take(&["postgres"]))?, ..SinkConfig::default() };
        kwargs.fill(&mut request)?.fill(&mut sinks)?.finish()?;
        request.plan()?;
        let sinks = sinks.resolve()?;
        Ok(BackfillJob { client: self.client.clone(), args: BackfillArgs { request, sinks }, on_progress })
    }

    /// A range read into memory as Arrow (`QboClient.read`), its options checked (nothing is sent
    /// yet): the backfill's, but no sink's (`BackfillRequest`'s and `on_progress`).
    #[pyo3(signature = (entity, start, end, **options))]
    fn _read_job(&self, py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<Opts<'_, '_>>) -> BindResult<ReadJob> {
        let (mut request, mut kwargs) = range_call(py, entity, start, end, options, BackfillRequest::new)?;
        let on_progress = take_on_progress(&mut kwargs);
        kwargs.fill(&mut request)?.finish()?;
        request.plan()?;
        Ok(ReadJob { client: self.client.clone(), request, on_progress })
    }

    /// A backfill's plan, counted but not read: what it will cost. Options: the backfill's
    /// (sink options make no difference and are refused).
    #[pyo3(signature = (entity, start, end, **options))]
    fn _estimate_job(&self, py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<Opts<'_, '_>>) -> BindResult<EstimateJob> {
        let (mut request, mut kwargs) = range_call(py, entity, start, end, options, BackfillRequest::new)?;
        kwargs.fill(&mut request)?.finish()?;
        request.plan()?;
        Ok(EstimateJob { client: self.client.clone(), request })
    }

    /// A window's fetch-to-stage with its options checked (nothing is sent yet); the Python face
    /// runs it with `run()` or awaits `run_future()`. Options and defaults: `StageRequest`'s.
    #[pyo3(signature = (entity, start, end, **options))]
    fn _stage_job(&self, py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<&Bound<'_, PyDict>>) -> BindResult<StageJob> {
        let (mut request, mut kwargs) = range_call(py, entity, start, end, options, StageRequest::new)?;
        kwargs.fill(&mut request)?.finish()?;
        request.check()?;
        Ok(StageJob { client: self.client.clone(), request })
    }

    /// A backfill's plan, counted and cut into at most `max_shares` shares (nothing is sent
    /// yet). Options: the backfill's and `ShareOptions`'.
    #[pyo3(signature = (entity, start, end, **options))]
    fn _share_plan_job(&self, py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<Opts<'_, '_>>) -> BindResult<SharePlanJob> {
        let (mut request, _) = range_call(py, entity, start, end, None, BackfillRequest::new)?;
        let shares = crate::share::share_plan_options(py, &mut request, options)?;
        Ok(SharePlanJob { client: self.client.clone(), request, shares })
    }

    /// A share's fetch-to-stage with its options checked. Options: `ShareStageRequest`'s.
    #[pyo3(signature = (share, **options))]
    fn _share_stage_job(&self, py: Python<'_>, share: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> BindResult<crate::share::ShareStageJob> {
        let mut request = qbo_core::stage::ShareStageRequest::new(crate::share::share_of(py, share)?);
        convert::Kwargs::new(py, options)?.fill(&mut request)?.finish()?;
        request.check()?;
        Ok(crate::share::ShareStageJob { client: self.client.clone(), request })
    }

    fn __repr__(&self) -> String {
        format!("QboClient(realm_id={:?})", self.client.realm_id())
    }
}

impl QboClient {
    /// The core client this handle shares (for jobs built outside this file).
    pub(crate) fn core(&self) -> &qbo_core::QboClient {
        &self.client
    }
}

/// A positional argument of a call (a bound of its range).
type Arg<'a, 'py> = &'a Bound<'py, PyAny>;
/// A call's `**options`.
type Opts<'a, 'py> = &'a Bound<'py, PyDict>;

/// A call over `entity`'s records in `[start, end)`: the core request `new` makes of it, and the
/// call's options, for the request's option sets to take.
fn range_call<'py, R>(
    py: Python<'py>,
    entity: &str,
    start: Arg<'_, '_>,
    end: Arg<'_, '_>,
    options: Option<Opts<'_, 'py>>,
    new: impl FnOnce(qbo_core::Entity, DateTime<Utc>, DateTime<Utc>) -> R,
) -> BindResult<(R, convert::Kwargs<'py>)> {
    let request = new(convert::entity(entity)?, convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
    Ok((request, convert::Kwargs::new(py, options)?))
}

/// The `on_progress` option: a callable given each `ProgressEvent` (None or absent: no events).
fn take_on_progress(kwargs: &mut convert::Kwargs<'_>) -> Option<Py<PyAny>> {
    kwargs.take(&["on_progress"]).filter(|v| !v.is_none()).map(Bound::unbind)
}

/// A window read's options (`page_size`, `filter_field`), parsed as a stage's are.
fn window_read(py: Python<'_>, entity: &str, start: Arg<'_, '_>, end: Arg<'_, '_>, options: Option<Opts<'_, '_>>) -> BindResult<StageRequest> {
    let (mut read, mut kwargs) = range_call(py, entity, start, end, options, StageRequest::new)?;
    kwargs.fill_only(&mut read, &["page_size", "filter_field"])?.finish()?;
    read.check()?;
    Ok(read)
}
