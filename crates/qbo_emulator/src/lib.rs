//! # qbo_emulator — a local QuickBooks Online emulator
//!
//! No machine here reaches Intuit, and users want offline development too, so qbo_rs ships an
//! emulator of the parts of QBO it uses, in the spirit of stripe-mock or moto: the behaviour
//! below, each item as Intuit documents it or as it has been seen to answer. It is pure Rust (tokio +
//! axum); the Python binding and the CLI call the API below.
//!
//! ```no_run
//! # async fn demo() -> Result<(), qbo_emulator::EmulatorError> {
//! use qbo_emulator::{Emulator, EmulatorConfig, Knobs};
//! let emu = Emulator::start(EmulatorConfig { invoices: 10_000, knobs: Knobs::unthrottled(), ..Default::default() }).await?;
//! println!("API  {}/v3/company/{}/query", emu.base_url(), emu.realm_id());
//! println!("auth {} client {} / {}", emu.token_url(), emu.client_id(), emu.client_secret());
//! let truth = emu.truth("Invoice")?;          // what a complete backfill must end up with
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Routes (the contract's subset)
//!
//! | Route | What |
//! |---|---|
//! | `GET\|POST /v3/company/{realm}/query` | Statement from `?query=` or from the body (`application/text`, `text/plain`, any other type as raw text, or a form field `query`). `minorversion` is ignored (every value is served as 75). |
//! | `POST /v3/company/{realm}/batch` | `{"BatchItemRequest":[{"bId":..,"Query":..}]}`, query items only, at most 30; HTTP 200 with per-item `QueryResponse` or `Fault`. Each item is a call in the realm's minute and, when it answers, a metered read; at most [`Knobs::batch_per_minute`] (40) batches a minute. |
//! | `GET /v3/company/{realm}/cdc?entities=..&changedSince=..` | Every object of the listed entities changed at or after changedSince: per entity (in the requested order) the live records ascending by LastUpdatedTime, then a `"status":"Deleted"` stub per deleted Invoice ascending by deletion time; [`Knobs::cdc_max_objects`] (1000) objects at most across all entities, no paging; [`Knobs::cdc_max_lookback_days`] (30) enforced. See [Deletes and creations](#deletes-and-creations). |
//! | `GET /v3/company/{realm}/{entity}/{id}` | One record, `{"Invoice":{..},"time":..}`; unknown Id → 400 code 610. |
//! | `POST /oauth2/v1/tokens/bearer` | `grant_type=refresh_token`; client auth by HTTP Basic (takes precedence) or `client_id`/`client_secret` form fields. |
//! | `GET /.well-known/openid_configuration` | OpenID discovery document pointing at this emulator (also `openid-configuration`). |
//!
//! Every API response carries `intuit_tid` (`1-<8hex>-<24hex>`), `QBO-Version` and
//! `Content-Type: application/json;charset=utf-8`, and a compact JSON body with a top-level
//! `time` in Pacific time with milliseconds. Bodies are never compressed (gzip would make the
//! emulator CPU-bound; clients that ask for it get identity).
//!
//! Order of checks on an API request: bearer token (401 with the lower-case envelope Intuit
//! sends with a 401, and `WWW-Authenticate: Bearer realm="Intuit", error="invalid_token"`), realm
//! (403, code 3100, same envelope), throttle (429, code 3001), then `latency_ms`, then the fault
//! (dice, position or time), then parsing (400 ValidationFault), then the answer.
//!
//! ## Real clients
//!
//! The ej2 `python-quickbooks` client works unchanged (`tests/test_python_quickbooks.py`
//! exercises count, all, filter, query, get, a ValidationFault and a 401): give Intuit's
//! `intuit-oauth` `AuthClient` the discovery URL above as its `environment`, set
//! `QuickBooks.api_url_v3 = emulator.api_url()`, and set `OAUTHLIB_INSECURE_TRANSPORT=1` because
//! the emulator speaks plain HTTP. `examples/serve.rs` runs a standalone emulator for such
//! clients and prints its URLs and credentials as one JSON line.
//!
//! ## Token endpoint
//!
//! * Wrong or missing client credentials → 401 `{"error":"invalid_client"}`.
//! * Missing `grant_type` / `refresh_token` → 400 `invalid_request`; another grant → 400
//!   `unsupported_grant_type`.
//! * Unknown, rotated-away or expired refresh token → 400
//!   `{"error_description":"Incorrect or invalid refresh token","error":"invalid_grant"}`.
//! * Success: `{"token_type":"bearer","expires_in":3600,"x_refresh_token_expires_in":8726400,
//!   "refresh_token":..,"access_token":"eyJlbmMi…"}` (~800-char opaque access token). The refresh
//!   token's value rotates once it is `refresh_rotate_after_secs` old (default 86400; 0 = every
//!   refresh); until then the same value comes back and `x_refresh_token_expires_in` counts
//!   down. The previous value dies at rotation unless `old_refresh_grace_secs` > 0. With the
//!   request header `x-include-refresh-token-hard-expires-in: true` the answer also has
//!   `x_refresh_token_hard_expires_in` (5 years from start, never reset).
//! * There is no access token at start: call the token endpoint with
//!   [`Emulator::initial_refresh_token`], or take one from [`Emulator::issue_access_token`].
//!
//! ## Query language
//!
//! See [`query::parse()`]: `SELECT * | COUNT(*) FROM Entity [WHERE a op v AND ...]
//! [ORDERBY|ORDER BY p [ASC|DESC], ...] [STARTPOSITION n] [MAXRESULTS n]` (the last three in
//! any order), case-insensitive keywords, entity and property names, `MetaData.`/`Metadata.`,
//! operators `= < > <= >= IN LIKE` (`%` only), `AND` only, values `'str\'ing'`, numbers,
//! `true`/`false`, `CURRENT_DATE` (today in Pacific). Datetime literals: `Z`, `±HH:MM`, `±HHMM`,
//! no offset (America/Los_Angeles wall time) or a bare date (Pacific midnight); fractions allowed.
//!
//! Properties: every entity has `Id` (`=` and `IN` only), `MetaData.CreateTime`,
//! `MetaData.LastUpdatedTime`. Invoice adds `DocNumber`, `TxnDate`, `DueDate`, `CustomerRef`,
//! `Balance`, `TotalAmt`; Customer adds `Active`, `DisplayName`, `FullyQualifiedName`,
//! `CompanyName`, `GivenName`, `FamilyName`, `Balance`; Item adds `Active`, `Name`,
//! `FullyQualifiedName`, `Type`, `UnitPrice`. String comparisons are case-insensitive.
//!
//! Errors (HTTP 400, `ValidationFault`): code `4000` "Error parsing query" with a
//! `QueryParserError: …` detail for syntax errors, empty statements and unreadable literals;
//! code `4001` "Invalid query" with `QueryValidationError: invalid context declaration: X`
//! (unknown entity — only Invoice, Customer and Item exist), `Property X not found for Entity Y`,
//! `value 1500 is too large. Max allowed value is 1000`, STARTPOSITION < 1, MAXRESULTS < 1, or an
//! operator a property does not support (e.g. `Id > '5'`).
//!
//! Semantics: default MAXRESULTS 100; `maxResults` in the answer is the number of rows returned;
//! an empty page is `{"QueryResponse":{},"time":..}`; COUNT is `{"QueryResponse":{"totalCount":n}}`
//! (also for 0). Inactive Customers/Items are hidden unless the WHERE filters on `Active` (COUNT
//! too). Without ORDERBY the order is [`Knobs::default_order`]: [`DefaultOrder::Observed`]
//! (Customer/Item by name case-insensitively, Invoice by LastUpdatedTime DESC, as recorded
//! sandbox answers came; Intuit leaves it unspecified) or [`DefaultOrder::Id`] (ascending Id).
//! Ties are always broken by numeric Id ascending (also inside
//! `ORDERBY MetaData.LastUpdatedTime DESC`), so every order is deterministic.
//!
//! ## Generated data (what tests may rely on)
//!
//! All of it is a pure function of `(seed, invoices, customers, items, data_start, data_end)`:
//! the same config gives byte-identical records. [`Emulator::data_summary`] (and
//! `GET /_emulator/summary`) reports the facts below for a running instance.
//!
//! * **Span.** Every CreateTime and LastUpdatedTime lies in `[data_start 00:00Z, data_end+1 00:00Z)`
//!   and CreateTime <= LastUpdatedTime. Ids are `1..=n` per entity and grow with CreateTime.
//!   SyncToken is 0 when the record was never updated, else 1..=3 (inactive list records >= 1).
//! * **Empty months.** When the span covers >= 6 calendar months, `round(6 %)` of them (at least
//!   one), never among the first two or last two, hold **no record of any entity**: no
//!   CreateTime, LastUpdatedTime or (Invoice) TxnDate falls in them, whether months are taken in
//!   UTC or in Pacific time. Which months: [`empty_months`] (no generation needed) or
//!   [`Emulator::empty_months`]. For the default config (seed 42, 2015-01..2025-10, 130 months)
//!   that is 8 months.
//! * **Dense bursts.** Per entity one "bulk import" burst of `clamp(n/40, 50, 5000)` records
//!   (`n/10` when n < 200) sharing one exact LastUpdatedTime second, plus bursts of 50..=600
//!   records until another ~4 % of the records are in bursts. So 100k invoices always have a
//!   second holding > 1000 records (2500), i.e. a tie longer than the largest page.
//! * **Density.** Records are spread over the non-empty months with weights growing ~4x from
//!   the first month to the last, mild seasonality (Mar/Dec busier, Jul/Aug quieter) and ±40 %
//!   month jitter; three in four fall in Pacific business hours.
//! * **Inactive.** Exactly `round(10 %)` of Customers and of Items are inactive: `"Active":false`
//!   and `" (deleted)"` appended to DisplayName/FullyQualifiedName (Customer) or
//!   Name/FullyQualifiedName (Item).
//! * **Payloads** look like Intuit's: invoices (~2.1 KB compact JSON on average, 10th–90th
//!   percentile 1.75–2.6 KB, so ~2.1 MB per 1000-row page)
//!   with 2–5 `SalesItemLineDetail` lines plus the `SubTotalLineDetail` line, `TxnTaxDetail`,
//!   addresses, `CustomerRef` to an existing customer and `ItemRef`s to existing items (created
//!   no later than the invoice when possible); customers ~0.93 KB (0.75–1.16); items ~0.55 KB. Times are
//!   `YYYY-MM-DDTHH:MM:SS-08:00` / `-07:00` (DST-correct, whole seconds). `TxnDate` is the
//!   Pacific date of CreateTime.
//!
//! ## Edits
//!
//! An edit (by [`Knobs::edit_rate`], [`Emulator::edit`] or `POST /_emulator/edit/..`) bumps
//! SyncToken, sets LastUpdatedTime to now (wall clock, never backwards) and changes a field
//! (Invoice: `Balance` halves and `PrivateNote` is set; Customer: `Balance` and `Notes`; Item:
//! `UnitPrice` +5 % and `Description`). With `edit_rate` p, each `SELECT *` page request edits,
//! with probability p, one record matching the same WHERE that sits *before* the returned page
//! (positions < STARTPOSITION), or one of the returned rows when STARTPOSITION is 1 — exactly
//! what makes plain STARTPOSITION paging lose a record. Queries read under a
//! read lock and edits take the write lock, so each answer is consistent.
//!
//! ## Deletes and creations
//!
//! As QuickBooks records them ([`Emulator::delete`], [`Emulator::create`], or the admin routes):
//!
//! * **Transactions are hard-deleted.** A deleted Invoice leaves every query, COUNT, the read
//!   route (400 code 610) and the truth; only CDC and `GET /_emulator/deleted/Invoice` report it.
//!   CDC shows it as `{"domain":"QBO","status":"Deleted","Id":"129","MetaData":{"LastUpdatedTime":
//!   "2025-03-02T12:55:50-08:00"}}`, the time being the deletion's (Pacific, whole seconds), when
//!   the deletion time (kept to the millisecond) is >= changedSince.
//! * **Name-list records are never deleted.** Deleting a Customer or an Item makes it inactive:
//!   `"Active":false`, `" (deleted)"` appended to DisplayName/FullyQualifiedName (Customer) or
//!   Name/FullyQualifiedName (Item), SyncToken + 1, LastUpdatedTime now. It stays in the truth,
//!   is hidden from queries unless they filter on `Active`, and CDC returns it as an update.
//! * **Creation** renders a record as generation would for the next Id never used (Ids are never
//!   reused, deleted Invoices keep theirs), CreateTime = LastUpdatedTime = now, SyncToken 0.
//!   `?id=` (or `reuse_id`) brings back the Id of a deleted Invoice: QuickBooks never does this;
//!   it is a test device to check that a newer version wins over a deletion mark. A live Id is
//!   refused (409). After it, neither CDC nor the deleted list mention the old deletion.
//! * **Order of stamps.** A deletion is stamped now to the millisecond, strictly after every
//!   stamp handed out before it and in a later second than the deleted record's last
//!   LastUpdatedTime (so it may lie up to a second ahead of the wall clock); a re-created record
//!   is stamped in a later second than its deletion. A record's versions and its deletion are
//!   therefore strictly ordered even at the whole-second precision CDC shows.
//! * **CDC cap.** One answer holds at most [`Knobs::cdc_max_objects`] objects, stubs included.
//!   QuickBooks does not say which objects it drops beyond 1000; the emulator lists entities in
//!   the requested order, each one's live records then its stubs, and drops the tail. Each
//!   group's `maxResults` and `totalCount` give the number of objects it holds.
//!
//! Mutations take the entity's write lock (queries, counts, reads and CDC read under its read
//! lock), so every answer sees a record either before or after a change, never half of it; an
//! edit picked by `edit_rate` whose record was deleted meanwhile is dropped.
//!
//! ## Throttling and faults
//!
//! [`Knobs::throttle_per_minute`] (default 500) limits admitted calls in any sliding 60 s window
//! (a batch weighs one call per item and is let in only when all fit), [`Knobs::batch_per_minute`]
//! (default 40) batch requests, [`Knobs::max_in_flight`] (default 10) concurrent requests; the
//! emulator serves one realm and one app, so these are per realm (and app). Over any of them, or
//! while [`Knobs::force_429_next`] > 0 or a `throttle_for_secs` storm lasts, the answer is 429
//! with code 3001 as JSON (default) or XML, with `Retry-After` if configured. Rejected requests do
//! not count in the windows. [`Stats::metered_calls`] counts the reads QuickBooks meters (each
//! query, CDC and read answered whole, each answered batch item).
//!
//! An admitted API request may get one of [`FaultKind`]: 500 SystemFault 10000, 503, a connection
//! reset mid-body, a slow answer, a truncated 200 body, or a 200 carrying a Fault. Three ways to
//! choose which: [`Knobs::fault_rate`], seeded dice per request (a fixed request sequence sees the
//! same faults, but fewer requests meet fewer faults); [`Knobs::fault_first_k`], the first K
//! requests of each request kind (query page, query count, batch, CDC, read); and
//! [`Knobs::fault_every_secs`], the first request of each kind in every period. The last two take
//! [`Knobs::fault_kinds`] in turn and count from when the knob took its value, so two clients
//! meet comparable faults whatever number of requests they send.
//!
//! ## Admin HTTP routes (no auth)
//!
//! | Route | What |
//! |---|---|
//! | `GET /_emulator/truth/{entity}` | JSON list of [`TruthRow`] for every record that exists now, inactive ones included (deleted Invoices are not), by numeric Id (`Invoice`, `customer`, `items`… accepted) |
//! | `GET /_emulator/deleted/{entity}` | JSON list of [`DeletedRow`] (`{"id","deleted_at"}`, UTC RFC 3339 with milliseconds), ascending by deletion time; always `[]` for Customer and Item |
//! | `GET /_emulator/stats` | [`Stats`] |
//! | `GET /_emulator/knobs` | [`Knobs`] |
//! | `POST /_emulator/knobs` | JSON object with any subset of the knob fields; answers the new knobs (400 on unknown fields or bad values) |
//! | `POST /_emulator/edit/{entity}/{id}` | edit one record now; answers its [`TruthRow`] |
//! | `POST /_emulator/delete/{entity}/{id}` | delete one record now (Invoice: hard delete; Customer, Item: made inactive); answers the [`Deletion`]; 404 for an unknown Id, a deleted Invoice or an inactive record |
//! | `POST /_emulator/create/{entity}[?id=N]` | create one record now; answers its JSON as served; `?id=` re-creates a deleted Invoice (409 for a live Id, 404 for one never used) |
//! | `POST /_emulator/expire-access-tokens` | every issued access token becomes invalid before its stated expiry (a revocation; natural expiry is [`Knobs::access_token_ttl_secs`]); `{"expired":n}` |
//! | `GET /_emulator/summary` | [`DataSummary`] |
//! | `GET /_emulator/credentials` | the (fake) realm id, client id/secret, initial and current refresh token |
//!
//! ## Performance
//!
//! Each record's compact JSON is rendered once (at start or at an edit) into a `Bytes`; each
//! entity keeps an index sorted by `(LastUpdatedTime, Id)`. A page bounded by LastUpdatedTime
//! predicates and ordered by it is two binary searches plus one memcpy per record; COUNT on such
//! a window is two binary searches. Generation renders in parallel threads. See
//! `examples/bench_emulator.rs` for the measured throughput.
//!
//! ## Known deviations
//!
//! Only JSON is served (no XML for a missing `Accept`); plain HTTP only (no TLS); OR,
//! projections other than `*` (extra `SELECT *, Sku` names are accepted and ignored),
//! `Iterator`, deletes and creations through the API (only the admin routes change records),
//! token revocation, the authorization-code grant and the monthly quota are not emulated; the 10
//! requests/second limit is not separate from `max_in_flight`; the 120 batch requests a minute
//! per realm across apps are not reachable (one app); the "101 rows for MAXRESULTS 100" quirk is
//! not injected.

pub mod auth;
pub(crate) mod clock;
pub mod config;
pub mod data;
pub(crate) mod pacific;
pub mod query;
pub(crate) mod rng;
mod server;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{DefaultOrder, EmulatorConfig, FaultKind, Knobs, ThrottleBody};
pub use data::{empty_months, Burst, DataSummary, Entity, EntitySummary};
pub use pacific::format_pacific;
pub use server::QBO_VERSION;
pub use stats::Stats;

use server::{lock, rl, Shared};

/// Ground truth for one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRow {
    pub id: String,
    pub sync_token: String,
    /// As served: `YYYY-MM-DDTHH:MM:SS-08:00` (Pacific).
    pub last_updated_time: String,
    pub last_updated_utc: DateTime<Utc>,
    /// Always true for Invoice.
    pub active: bool,
}

/// What [`Emulator::delete`] (and `POST /_emulator/delete/..`) did. As JSON:
/// `{"outcome":"deleted","entity":"Invoice","id":"7","deleted_at":"2026-03-02T20:55:50.125Z"}` or
/// `{"outcome":"made_inactive","entity":"Customer","id":"5","record":{..truth row..}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Deletion {
    /// A transaction (Invoice) is gone from every query, count, read and the truth; CDC reports
    /// it as a `"status":"Deleted"` stub.
    Deleted {
        entity: String,
        id: String,
        /// The deletion time (UTC, RFC 3339 with milliseconds in JSON).
        #[serde(with = "pacific::utc_millis")]
        deleted_at: DateTime<Utc>,
    },
    /// A name-list record (Customer, Item) is never deleted: it became inactive in a new version
    /// (SyncToken + 1, LastUpdatedTime now, `" (deleted)"` appended to its names).
    MadeInactive { entity: String, id: String, record: TruthRow },
}

/// A hard-deleted record, as [`Emulator::deleted`] and `GET /_emulator/deleted/..` list them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedRow {
    pub id: String,
    /// UTC, RFC 3339 with milliseconds in JSON (`2026-03-02T20:55:50.125Z`).
    #[serde(with = "pacific::utc_millis")]
    pub deleted_at: DateTime<Utc>,
}

/// Errors of the Rust API.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid emulator config: {0}")]
    InvalidConfig(String),
    #[error("unknown entity {0:?} (Invoice, Customer or Item)")]
    UnknownEntity(String),
    #[error("no {entity} with Id {id:?}")]
    UnknownId { entity: String, id: String },
    #[error("{entity} {id:?} is already deleted (or inactive)")]
    AlreadyDeleted { entity: String, id: String },
    #[error("{entity} {id:?} exists: only the Id of a deleted Invoice can be re-created")]
    IdInUse { entity: String, id: String },
    #[error("emulator internal error: {0}")]
    Internal(String),
}

/// A running emulator. Dropping it stops the server (without waiting); [`Emulator::shutdown`]
/// stops it and waits.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    client_id: String,
    client_secret: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn derive_credential(seed: u64, tag: u64, make: impl FnOnce(&mut rng::Rng) -> String, given: &str) -> String {
    if given.is_empty() {
        make(&mut rng::Rng::derive(seed, 0xC0DE, tag))
    } else {
        given.to_string()
    }
}

/// The entity an admin name means (`Invoice`, `invoice`, `invoices`).
fn entity_of(name: &str) -> Result<Entity, EmulatorError> {
    Entity::parse_loose(name).ok_or_else(|| EmulatorError::UnknownEntity(name.to_string()))
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Emulator {
    /// Validates the config, binds, generates the data (on a blocking thread) and spawns the
    /// server on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        if config.data_end < config.data_start {
            return Err(EmulatorError::InvalidConfig("data_end is before data_start".into()));
        }
        if config.invoices > 0 && (config.customers == 0 || config.items == 0) {
            return Err(EmulatorError::InvalidConfig("invoices need at least one customer and one item".into()));
        }
        if config.invoices > u32::MAX as usize / 2 || config.customers > u32::MAX as usize / 2 || config.items > u32::MAX as usize / 2 {
            return Err(EmulatorError::InvalidConfig("too many records".into()));
        }
        if !(0.0..=1.0).contains(&config.knobs.fault_rate) || !(0.0..=1.0).contains(&config.knobs.edit_rate) {
            return Err(EmulatorError::InvalidConfig("fault_rate and edit_rate must be within 0..=1".into()));
        }
        let addr_s = format!("{}:{}", config.host, config.port);
        let listener =
            tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await.map_err(|source| EmulatorError::Bind { addr: addr_s.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| EmulatorError::Bind { addr: addr_s, source })?;
        let cfg = config.clone();
        let ds =
            tokio::task::spawn_blocking(move || data::generate(&cfg)).await.map_err(|e| EmulatorError::Internal(format!("data generation failed: {e}")))?;
        let seed = config.seed;
        let realm = derive_credential(seed, 1, |r| format!("9130{:012}", r.below(1_000_000_000_000)), &config.realm_id);
        let client_id = derive_credential(seed, 2, |r| format!("AB{}", r.chars(ALNUM, 48)), &config.client_id);
        let client_secret = derive_credential(seed, 3, |r| r.chars(ALNUM, 40), &config.client_secret);
        let refresh = derive_credential(seed, 4, auth::Auth::new_refresh_value, &config.refresh_token);
        let summary = data::summarize(&ds);
        let auth = auth::Auth::new(seed, client_id.clone(), client_secret.clone(), refresh);
        let shared = Arc::new(Shared::new(seed, realm, auth, config.knobs.clone(), ds.tables, summary));
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("qbo_emulator server stopped with an error: {e}");
            }
        });
        tracing::info!(%addr, "qbo_emulator listening");
        Ok(Emulator { shared, addr, client_id, client_secret, stop: Some(tx), task: Some(task) })
    }

    /// `http://HOST:PORT`. The query API is `{base}/v3/company/{realm}/query`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base}/v3`, the prefix Intuit's clients call `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/v3", self.base_url())
    }

    /// `{base}/v3/company/{realm}/query`.
    pub fn query_url(&self) -> String {
        format!("{}/v3/company/{}/query", self.base_url(), self.realm_id())
    }

    /// `{base}/oauth2/v1/tokens/bearer`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v1/tokens/bearer", self.base_url())
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn realm_id(&self) -> &str {
        &self.shared.realm
    }
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }
    /// The refresh token valid at start.
    pub fn initial_refresh_token(&self) -> &str {
        &self.shared.initial_refresh
    }
    /// The refresh token valid now (after any rotations).
    pub fn current_refresh_token(&self) -> String {
        lock(&self.shared.auth).current_refresh().to_string()
    }

    /// Issues a valid access token without going through the token endpoint (tests, tools).
    pub fn issue_access_token(&self) -> String {
        let ttl = rl(&self.shared.knobs).access_token_ttl_secs;
        lock(&self.shared.auth).issue_access(ttl)
    }

    /// Every record of an entity that exists now, including inactive ones (deleted invoices are
    /// not), sorted by numeric Id.
    pub fn truth(&self, entity: &str) -> Result<Vec<TruthRow>, EmulatorError> {
        let e = entity_of(entity)?;
        Ok(rl(self.shared.table(e)).live().map(server::truth_row).collect())
    }

    /// The hard-deleted records of an entity, ascending by deletion time (always empty for
    /// Customer and Item, which are made inactive instead).
    pub fn deleted(&self, entity: &str) -> Result<Vec<DeletedRow>, EmulatorError> {
        Ok(self.shared.deleted(entity_of(entity)?))
    }

    /// The served JSON of one record (as it is now).
    pub fn record_json(&self, entity: &str, id: &str) -> Result<bytes::Bytes, EmulatorError> {
        let e = entity_of(entity)?;
        let t = rl(self.shared.table(e));
        let idx = t.index_of(id).ok_or_else(|| EmulatorError::UnknownId { entity: e.name().into(), id: id.into() })?;
        Ok(t.recs[idx].json.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Resets every counter to zero.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    pub fn knobs(&self) -> Knobs {
        rl(&self.shared.knobs).clone()
    }

    pub fn set_knobs(&self, knobs: Knobs) {
        self.shared.set_knobs(knobs);
    }

    /// Edits one record now: SyncToken + 1, LastUpdatedTime = now, a changed field.
    pub fn edit(&self, entity: &str, id: &str) -> Result<TruthRow, EmulatorError> {
        self.shared.edit(entity_of(entity)?, id)
    }

    /// Deletes one record now, as QuickBooks does: an Invoice is hard-deleted, a Customer or an
    /// Item made inactive (see [`Deletion`]). An unknown Id, a deleted Invoice or an inactive
    /// record is an error.
    pub fn delete(&self, entity: &str, id: &str) -> Result<Deletion, EmulatorError> {
        self.shared.delete(entity_of(entity)?, id)
    }

    /// Creates one record now, rendered as generated ones are (CreateTime = LastUpdatedTime =
    /// now, SyncToken 0), and returns its served JSON. Without `reuse_id` it takes the next Id
    /// never used. With the Id of a deleted Invoice it brings that Id back as a new record, in a
    /// later second than the deletion: QuickBooks never reuses an Id, so this is only a test
    /// device, to check that a client lets a newer version win over a deletion mark. A live Id
    /// is refused ([`EmulatorError::IdInUse`]).
    pub fn create(&self, entity: &str, reuse_id: Option<&str>) -> Result<bytes::Bytes, EmulatorError> {
        self.shared.create(entity_of(entity)?, reuse_id)
    }

    /// Every issued access token becomes invalid: the next API call gets 401.
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.auth).expire_all();
    }

    /// Facts about the generated data (empty months, bursts, counts).
    pub fn data_summary(&self) -> DataSummary {
        self.shared.summary.clone()
    }

    /// First days of the calendar months with no record of any entity.
    pub fn empty_months(&self) -> Vec<NaiveDate> {
        self.shared.summary.empty_months.clone()
    }

    /// Benchmark helper: assembles every `page`-row page of an entity in-process, exactly as the
    /// query route does for `ORDERBY MetaData.LastUpdatedTime STARTPOSITION n MAXRESULTS page`
    /// inside a LastUpdatedTime window, without sockets. Returns (rows, bytes).
    #[doc(hidden)]
    pub fn bench_assemble_pages(&self, entity: &str, page: usize) -> (usize, usize) {
        let Some(e) = Entity::parse_loose(entity) else { return (0, 0) };
        let t = rl(self.shared.table(e));
        let active = if e.is_list() { " AND Active IN (true,false)" } else { "" };
        let (mut rows, mut bytes, mut start) = (0, 0, 1);
        let mut buf = Vec::new();
        loop {
            let q = format!(
                "SELECT * FROM {} WHERE MetaData.LastUpdatedTime >= '1970-01-01T00:00:00Z'{active} \
                 ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {page}",
                e.name()
            );
            let Ok(plan) = query::compile(&q) else { return (rows, bytes) };
            buf.clear();
            let info = query::run(&t, &plan, None, &mut buf);
            rows += info.rows;
            bytes += buf.len();
            if info.rows < page {
                return (rows, bytes);
            }
            start += page;
        }
    }

    /// Stops accepting connections, lets open requests finish (5 s at most) and returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Emulator {
    /// Signals a graceful stop and returns at once: the listener closes, idle keep-alive
    /// connections are closed, requests in progress finish in the background.
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An [`Emulator`] on its own tokio runtime (two worker threads named `qbo-emulator`), for
/// callers without a runtime: the PyO3 binding, a CLI, synchronous tests. Derefs to
/// [`Emulator`]. Must not be created or stopped from inside an async context (it blocks).
pub struct BackgroundEmulator {
    emu: Option<Emulator>,
    rt: Option<tokio::runtime::Runtime>,
}

impl BackgroundEmulator {
    /// Builds the runtime, starts the emulator on it and returns once it listens.
    pub fn start(config: EmulatorConfig) -> Result<BackgroundEmulator, EmulatorError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qbo-emulator")
            .enable_all()
            .build()
            .map_err(|e| EmulatorError::Internal(format!("cannot build the emulator runtime: {e}")))?;
        let emu = rt.block_on(Emulator::start(config))?;
        Ok(BackgroundEmulator { emu: Some(emu), rt: Some(rt) })
    }

    /// Stops the server (waiting up to 5 s for open requests) and the runtime.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let (Some(emu), Some(rt)) = (self.emu.take(), self.rt.as_ref()) {
            rt.block_on(emu.shutdown());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl std::ops::Deref for BackgroundEmulator {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        self.emu.as_ref().expect("emulator is running until stop")
    }
}

impl Drop for BackgroundEmulator {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod api_tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Emulator>();
        assert_send_sync::<BackgroundEmulator>();
        assert_send_sync::<EmulatorConfig>();
        assert_send_sync::<Stats>();
    }

    #[test]
    fn background_emulator_serves_without_a_caller_runtime() {
        let emu = BackgroundEmulator::start(EmulatorConfig { invoices: 20, customers: 5, items: 5, ..Default::default() }).expect("starts");
        assert!(emu.base_url().starts_with("http://127.0.0.1:"));
        assert_eq!(emu.truth("Invoice").unwrap().len(), 20);
        // A plain blocking HTTP exchange over std TCP.
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(emu.local_addr()).unwrap();
        write!(s, "GET /_emulator/knobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("throttle_per_minute"));
        emu.stop();
    }

    #[test]
    fn config_deserializes_partially() {
        let c: EmulatorConfig = serde_json::from_str(r#"{"invoices": 7, "knobs": {"latency_ms": 3}}"#).unwrap();
        assert_eq!((c.invoices, c.customers, c.knobs.latency_ms, c.knobs.throttle_per_minute), (7, 300, 3, Some(500)));
        assert_eq!(c.data_start, NaiveDate::from_ymd_opt(2015, 1, 1).unwrap());
        assert!(serde_json::from_str::<EmulatorConfig>(r#"{"invoice": 7}"#).is_err(), "typos are rejected");
        assert!(serde_json::from_str::<Knobs>(r#"{"latency": 7}"#).is_err());
        let k: Knobs = serde_json::from_str(r#"{"fault_kinds": ["Reset", "Slow"], "throttle_body": "Xml"}"#).unwrap();
        assert_eq!(k.fault_kinds, vec![FaultKind::Reset, FaultKind::Slow]);
    }
}
