//! The QBO client: one place where a query statement or a Change Data Capture call becomes an
//! HTTP request, under the realm's limiter, with the retry policy, the 401-refresh-once rule,
//! and fault parsing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;

use crate::auth::{RotationHook, TokenManager};
use crate::cdc::{parse_cdc, CdcPage};
use crate::credentials::Credentials;
use crate::entity::Entity;
use crate::error::{retry_after, Error};
use crate::http::Http;
use crate::limiter::{shared_limiter, LimiterScope, Pacing, RealmLimiter};
use crate::options::{unknown_option, OptionSet, OptionValue};
use crate::query::MINOR_VERSION;
use crate::response::{parse_envelope, parse_xml_fault, Envelope, Fault};
use crate::retry::RetryPolicy;
use crate::time::qbo_literal;
use crate::token_store::FileTokenStore;

/// Intuit cuts requests off at 120 s; waiting longer is pointless.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct ClientConfig {
    pub pacing: Pacing,
    /// Who shares the realm's budget: every process on the machine by default.
    pub limiter_scope: LimiterScope,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// Where rotated refresh tokens (and the current access token) are kept between runs.
    pub token_store: Option<PathBuf>,
    pub on_rotate: Option<RotationHook>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            pacing: Pacing::default(),
            limiter_scope: LimiterScope::default(),
            retry: RetryPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            token_store: None,
            on_rotate: None,
        }
    }
}

impl ClientConfig {
    pub fn validate(&self) -> Result<(), Error> {
        self.pacing.validate()?;
        if self.timeout.is_zero() {
            return Err(Error::config("timeout must be positive"));
        }
        if self.retry.max_retries > 20 {
            return Err(Error::config("max_retries above 20 would wait for hours: use at most 20"));
        }
        if self.retry.base.is_zero() || self.retry.base > Duration::from_secs(60) {
            return Err(Error::config(format!("backoff_base must be between 0 and 60 seconds, got {:?}", self.retry.base)));
        }
        Ok(())
    }
}

fn default_token_store(creds: &Credentials) -> Result<PathBuf, Error> {
    crate::token_store::default_path(&creds.realm_id, &creds.token_endpoint())
        .ok_or_else(|| Error::config("no place for the token store: set QBO_TOKEN_STORE (or HOME), or pass token_store=None"))
}

/// A client's options by name, for one realm on one server. Unless told otherwise it keeps the
/// realm's tokens where the CLI and the Python face do ([`crate::token_store::default_path`], the
/// option's `"auto"`) and shares the realm's budget with every process on the machine. The
/// hook `on_rotate` is not a value: callers set it on the finished config.
pub struct ClientOptions<'a> {
    config: ClientConfig,
    credentials: &'a Credentials,
    /// No `token_store` was given: [`ClientOptions::finish`] picks the realm's default file.
    default_token_store: bool,
}

impl<'a> ClientOptions<'a> {
    pub fn new(credentials: &'a Credentials) -> Self {
        ClientOptions { config: ClientConfig::default(), credentials, default_token_store: true }
    }

    pub fn finish(mut self) -> Result<ClientConfig, Error> {
        if self.default_token_store {
            self.config.token_store = Some(default_token_store(self.credentials)?);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

fn seconds(name: &str, value: &OptionValue) -> Result<Duration, Error> {
    let secs = value.seconds(name)?;
    Duration::try_from_secs_f64(secs).map_err(|_| Error::config(format!("{name} must be a positive number of seconds, got {secs}")))
}

impl OptionSet for ClientOptions<'_> {
    const NAMES: &'static [&'static str] = &["requests_per_minute", "max_in_flight", "max_retries", "backoff_base", "timeout", "token_store", "limiter_dir"];

    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error> {
        let config = &mut self.config;
        match name {
            "requests_per_minute" => config.pacing.requests_per_minute = value.whole(name)?,
            "max_in_flight" => config.pacing.max_in_flight = value.whole(name)?,
            "max_retries" => config.retry.max_retries = value.whole(name)?,
            "backoff_base" => config.retry.base = seconds(name, value)?,
            "timeout" => config.timeout = seconds(name, value)?,
            "token_store" => {
                self.default_token_store = false;
                config.token_store = match value.optional_text(name)?.as_deref() {
                    None => None,
                    Some("auto") => Some(default_token_store(self.credentials)?),
                    Some(_) => Some(value.path(name)?),
                }
            }
            "limiter_dir" => {
                config.limiter_scope = match value.optional_text(name)?.as_deref() {
                    None => LimiterScope::Process,
                    Some("auto") => LimiterScope::machine_default(),
                    Some(_) => LimiterScope::Machine(value.path(name)?),
                }
            }
            _ => return Err(unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// Requests by kind, as a client counted them; subtract two to see one call's share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestCounts {
    /// Page reads (`SELECT *`), first attempts.
    pub pages: u64,
    /// `SELECT COUNT(*)`, first attempts.
    pub counts: u64,
    /// Attempts repeated after a 429, a 5xx, a timeout, a reset or a 401 (any kind).
    pub retries: u64,
    /// Of the retries, those after a 429.
    pub throttled: u64,
    /// Calls to Intuit's token endpoint.
    pub tokens: u64,
    /// Change Data Capture calls (`/cdc`), first attempts.
    #[serde(default)]
    pub cdc: u64,
}

impl RequestCounts {
    /// Calls to the QuickBooks API: what Intuit meters (token calls are OAuth, not API reads).
    pub fn api_calls(&self) -> u64 {
        self.pages + self.counts + self.cdc + self.retries
    }
}

impl std::ops::Sub for RequestCounts {
    type Output = RequestCounts;

    fn sub(self, before: RequestCounts) -> RequestCounts {
        RequestCounts {
            pages: self.pages - before.pages,
            counts: self.counts - before.counts,
            retries: self.retries - before.retries,
            throttled: self.throttled - before.throttled,
            tokens: self.tokens - before.tokens,
            cdc: self.cdc - before.cdc,
        }
    }
}

/// What kind of API request a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Page,
    Count,
    Cdc,
}

/// One API call: a query statement (POSTed to `/query`), or a Change Data Capture read of one
/// entity's changes since an instant (`GET /cdc`).
enum Call<'a> {
    Query(&'a str),
    Cdc { since: String },
}

/// Counters a caller can read to see how a run went.
#[derive(Debug, Default)]
struct ClientCounters {
    pages: std::sync::atomic::AtomicU64,
    counts: std::sync::atomic::AtomicU64,
    cdc: std::sync::atomic::AtomicU64,
    retries: std::sync::atomic::AtomicU64,
    throttled: std::sync::atomic::AtomicU64,
    /// Nanoseconds slept before retries (429 pauses and 5xx/timeout back-offs).
    retry_wait_nanos: std::sync::atomic::AtomicU64,
}

struct Inner {
    http: Arc<Http>,
    query_url: String,
    cdc_url: String,
    realm_id: String,
    tokens: TokenManager,
    limiter: Arc<RealmLimiter>,
    retry: RetryPolicy,
    counters: ClientCounters,
    pacing: Pacing,
}

/// A cheap-to-clone handle; clones share tokens, limiter and connection pool.
#[derive(Clone)]
pub struct QboClient {
    inner: Arc<Inner>,
}

enum Outcome<T> {
    Done(T),
    Retry { reason: String, status: Option<u16>, tid: Option<String>, wait_hint: Option<Duration>, throttled: bool },
    Unauthorized { tid: Option<String> },
    Fail(Error),
}

impl QboClient {
    /// Must be called inside a tokio runtime (the limiter's timers live there).
    pub fn new(creds: Credentials, config: ClientConfig) -> Result<Self, Error> {
        creds.validate()?;
        config.validate()?;
        let http = Arc::new(Http::new(config.timeout)?);
        // A slot outlives a killed process (in another PID namespace) at most this long.
        let lease = config.timeout + Duration::from_secs(60);
        let limiter = shared_limiter(&creds.api_base(), &creds.realm_id, config.pacing, &config.limiter_scope, lease);
        let tokens = TokenManager::new(creds.clone(), Arc::clone(&http), config.token_store.map(FileTokenStore::new), config.on_rotate);
        Ok(QboClient {
            inner: Arc::new(Inner {
                http,
                query_url: creds.query_url(),
                cdc_url: creds.cdc_url(),
                realm_id: creds.realm_id.clone(),
                tokens,
                limiter,
                retry: config.retry,
                counters: ClientCounters::default(),
                pacing: config.pacing,
            }),
        })
    }

    pub fn realm_id(&self) -> &str {
        &self.inner.realm_id
    }

    /// The pace this client keeps for its realm (requests per minute).
    pub fn requests_per_minute(&self) -> u32 {
        self.inner.pacing.requests_per_minute
    }

    /// Requests sent so far, by kind.
    pub fn request_counts(&self) -> RequestCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.counters;
        RequestCounts {
            pages: c.pages.load(Relaxed),
            counts: c.counts.load(Relaxed),
            retries: c.retries.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
            tokens: self.inner.tokens.requests(),
            cdc: c.cdc.load(Relaxed),
        }
    }

    /// Time this client's requests have spent waiting before their retries (after a 429 or a
    /// 5xx, a timeout, a reset), added up over every request: a progress display shows it as
    /// the time lost to throttling.
    pub fn retry_waited(&self) -> Duration {
        Duration::from_nanos(self.inner.counters.retry_wait_nanos.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The file every process shares this realm's request budget through, if any.
    pub fn budget_file(&self) -> Option<&std::path::Path> {
        self.inner.limiter.budget_file()
    }

    /// Runs `SELECT COUNT(*) …` and returns `totalCount` (a missing value reads as 0).
    pub async fn count(&self, entity: Entity, statement: &str) -> Result<u64, Error> {
        self.execute_raw(RequestKind::Count, entity, Call::Query(statement), |_, env| Ok(env.total_count.unwrap_or(0))).await
    }

    /// Asks Change Data Capture what changed in `entity` since `since`: one request, no paging
    /// (QuickBooks answers at most [`crate::cdc::MAX_OBJECTS`] objects and looks back at most
    /// [`crate::cdc::LOOKBACK_DAYS`] days).
    pub async fn cdc(&self, entity: Entity, since: chrono::DateTime<chrono::Utc>) -> Result<CdcPage, Error> {
        self.execute_raw(RequestKind::Cdc, entity, Call::Cdc { since: qbo_literal(since) }, |body, _| parse_cdc(body, entity)).await
    }

    /// Runs a SELECT and returns the body plus the byte ranges of each record inside it,
    /// so records can be written without being copied or re-serialised.
    pub async fn select(&self, entity: Entity, statement: &str) -> Result<RawPage, Error> {
        self.execute_raw(RequestKind::Page, entity, Call::Query(statement), |body, env| {
            let base = body.as_ptr() as usize;
            let records = env
                .records
                .iter()
                .map(|r| {
                    let s = r.get().as_bytes();
                    let start = s.as_ptr() as usize - base;
                    start..start + s.len()
                })
                .collect();
            Ok(RawPage { body: body.clone(), records })
        })
        .await
    }

    async fn execute_raw<T>(
        &self,
        kind: RequestKind,
        entity: Entity,
        call: Call<'_>,
        read: impl Fn(&Bytes, &Envelope<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &*self.inner;
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut retries = 0u32;
        let mut refreshed_after_401 = false;
        let mut first = true;
        loop {
            let token = inner.tokens.access_token().await?;
            let outcome = {
                let _permit = inner.limiter.acquire().await;
                let counter = match (first, kind) {
                    (false, _) => &inner.counters.retries,
                    (true, RequestKind::Page) => &inner.counters.pages,
                    (true, RequestKind::Count) => &inner.counters.counts,
                    (true, RequestKind::Cdc) => &inner.counters.cdc,
                };
                counter.fetch_add(1, Relaxed);
                first = false;
                self.attempt(entity, &call, &token.bearer(), &read).await
            };
            match outcome {
                Outcome::Done(v) => return Ok(v),
                Outcome::Fail(e) => return Err(e),
                Outcome::Unauthorized { tid } => {
                    if refreshed_after_401 {
                        return Err(Error::Auth {
                            message: "QBO answered 401 again right after a token refresh: the app may have been \
                                      disconnected from this company, or the token belongs to another environment \
                                      (sandbox vs production)"
                                .into(),
                            intuit_tid: tid,
                        });
                    }
                    tracing::info!(target: "qbo_rs", "QBO answered 401 (access token expired or revoked): refreshing once");
                    refreshed_after_401 = true;
                    inner.tokens.after_unauthorized(&token).await?;
                }
                Outcome::Retry { reason, status, tid, wait_hint, throttled } => {
                    if throttled {
                        inner.counters.throttled.fetch_add(1, Relaxed);
                    }
                    if retries >= inner.retry.max_retries {
                        let attempts = retries + 1;
                        let message = format!(
                            "{reason}; gave up after {attempts} attempts (max_retries={}). The window was not \
                             written: re-run it later{}",
                            inner.retry.max_retries,
                            if throttled { ", or lower the request rate" } else { "" }
                        );
                        return Err(if throttled {
                            Error::RateLimited { message, intuit_tid: tid, attempts }
                        } else {
                            Error::Server { message, status, intuit_tid: tid, attempts }
                        });
                    }
                    let wait = inner.retry.wait(retries, wait_hint, &mut rng);
                    if throttled {
                        // The realm is over its budget: hold every caller off, not just this one.
                        inner.limiter.pause(wait);
                    }
                    retries += 1;
                    let tid_text = tid.map(|t| format!(", intuit_tid {t}")).unwrap_or_default();
                    if throttled {
                        tracing::warn!(target: "qbo_rs", "API Limit: 429 ({reason}{tid_text}); retry {retries}/{} in {:.1} s", inner.retry.max_retries, wait.as_secs_f64());
                    } else {
                        tracing::warn!(target: "qbo_rs", "{reason}{tid_text}; retry {retries}/{} in {:.1} s", inner.retry.max_retries, wait.as_secs_f64());
                    }
                    inner.counters.retry_wait_nanos.fetch_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX), Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt<T>(&self, entity: Entity, call: &Call<'_>, bearer: &str, read: &impl Fn(&Bytes, &Envelope<'_>) -> Result<T, Error>) -> Outcome<T> {
        let inner = &*self.inner;
        let http = match inner.http.client() {
            Ok(http) => http,
            Err(e) => return Outcome::Fail(e),
        };
        let request = match call {
            Call::Query(statement) => {
                http.post(&inner.query_url).query(&[("minorversion", MINOR_VERSION)]).header(CONTENT_TYPE, "application/text").body(statement.to_string())
            }
            Call::Cdc { since } => {
                http.get(&inner.cdc_url).query(&[("entities", entity.qbo_name()), ("changedSince", since.as_str())]).query(&[("minorversion", MINOR_VERSION)])
            }
        };
        let sent = request.header(AUTHORIZATION, bearer).header(ACCEPT, "application/json").send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return transport_retry(&e, None),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let tid = crate::http::intuit_tid(&headers);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return transport_retry(&e, tid),
        };
        let parsed = parse_envelope(&body, entity.qbo_name());
        let fault = match &parsed {
            Ok(env) => env.fault.clone(),
            Err(_) => parse_xml_fault(&String::from_utf8_lossy(&body)),
        };
        let retry = |reason: String, throttled: bool| Outcome::Retry {
            reason,
            status: Some(status.as_u16()),
            tid: tid.clone(),
            wait_hint: retry_after(&headers),
            throttled,
        };

        match status {
            StatusCode::UNAUTHORIZED => Outcome::Unauthorized { tid },
            StatusCode::TOO_MANY_REQUESTS => retry("QBO answered 429 ThrottleExceeded".into(), true),
            StatusCode::FORBIDDEN => {
                // Before 429 existed Intuit throttled with 403, and some answers still do.
                if fault.as_ref().is_some_and(Fault::is_throttle) {
                    return retry("QBO answered 403 ThrottleExceeded".into(), true);
                }
                Outcome::Fail(Error::Auth {
                    message: format!(
                        "QBO answered 403 for realm {}{}: the app is not authorised for this company, or \
                         sandbox and production credentials are mixed (set QBO_ENTORNO to match the keys)",
                        inner.realm_id,
                        fault.map(|f| format!(" ({f})")).unwrap_or_default()
                    ),
                    intuit_tid: tid,
                })
            }
            s if s.is_server_error() => retry(format!("QBO answered HTTP {}{}", s.as_u16(), fault.map(|f| format!(" ({f})")).unwrap_or_default()), false),
            s if s.is_success() => match parsed {
                Err(e) => retry(format!("QBO answered 200 with a malformed body ({e})"), false),
                Ok(env) => match env.fault {
                    Some(f) if f.is_validation() => Outcome::Fail(validation_error(f, tid)),
                    Some(f) if f.is_throttle() => retry(format!("QBO answered 200 carrying a throttle fault ({f})"), true),
                    Some(f) => retry(format!("QBO answered 200 carrying a fault ({f})"), false),
                    None if !env.answers(matches!(call, Call::Cdc { .. })) => {
                        retry(format!("QBO answered 200 without a {}", if matches!(call, Call::Cdc { .. }) { "CDCResponse" } else { "QueryResponse" }), false)
                    }
                    None => match read(&body, &env) {
                        Ok(v) => Outcome::Done(v),
                        Err(e) => Outcome::Fail(e),
                    },
                },
            },
            s if s == StatusCode::BAD_REQUEST => match fault {
                Some(f) if f.is_throttle() => retry("QBO answered 400 ThrottleExceeded".into(), true),
                Some(f) => Outcome::Fail(validation_error(f, tid)),
                None => Outcome::Fail(Error::Validation {
                    code: "400".into(),
                    message: "QBO answered 400 without a fault body".into(),
                    detail: None,
                    intuit_tid: tid,
                }),
            },
            s => Outcome::Fail(Error::Server {
                message: format!("QBO answered unexpected HTTP {}", s.as_u16()),
                status: Some(s.as_u16()),
                intuit_tid: tid,
                attempts: 1,
            }),
        }
    }
}

fn validation_error(f: Fault, tid: Option<String>) -> Error {
    Error::Validation { code: f.code, message: f.message, detail: f.detail, intuit_tid: tid }
}

fn transport_retry<T>(e: &reqwest::Error, tid: Option<String>) -> Outcome<T> {
    let kind = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "cannot connect to QBO"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the response"
    } else {
        "connection error"
    };
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut root = String::new();
    while let Some(s) = source {
        root = s.to_string();
        source = s.source();
    }
    Outcome::Retry { reason: format!("{kind} ({root})"), status: None, tid, wait_hint: None, throttled: false }
}

/// One SELECT response: the body and where each record sits in it.
pub struct RawPage {
    pub body: Bytes,
    pub records: Vec<std::ops::Range<usize>>,
}

impl RawPage {
    pub fn record(&self, i: usize) -> Bytes {
        self.body.slice(self.records[i].clone())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
