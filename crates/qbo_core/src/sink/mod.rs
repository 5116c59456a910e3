//! Where fetched records land. A sink writes one batch atomically and idempotently: the
//! newest version of each id wins, re-writing a batch changes nothing, and a crash leaves
//! the batch either fully applied or not at all.

pub mod jsonl;
mod jsonl_sync;
pub mod postgres;
pub mod record;
mod sync_state;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::entity::Entity;
use crate::error::Error;
use crate::paginate::FetchedRecord;
use crate::window::Window;

pub use sync_state::{SyncState, SyncView};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Records from one window, with the lineage every RAW row carries.
pub struct WriteBatch {
    pub entity: Entity,
    pub realm_id: String,
    pub window: Window,
    pub page_size: u32,
    pub ingested_at: DateTime<Utc>,
    pub records: Vec<FetchedRecord>,
}

/// What a batch did to a sink. `written()` counts every record the sink now holds at this
/// version or newer, which is what reconciliation compares with rows fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriteOutcome {
    pub inserted: u64,
    pub updated: u64,
    /// Already stored at the same version: nothing written.
    pub unchanged: u64,
    /// The sink already holds a newer version: kept it.
    pub stale: u64,
}

impl WriteOutcome {
    pub fn written(&self) -> u64 {
        self.inserted + self.updated + self.unchanged + self.stale
    }

    pub fn add(&mut self, other: WriteOutcome) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.stale += other.stale;
    }
}

/// Records QuickBooks reports deleted, learnt at `learnt_at`.
#[derive(Debug, Clone)]
pub struct DeleteBatch {
    pub entity: Entity,
    pub learnt_at: DateTime<Utc>,
    pub deletions: Vec<Deleted>,
}

/// One deleted record and when QuickBooks deleted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub id: String,
    pub deleted_at: DateTime<Utc>,
}

/// What a [`DeleteBatch`] did to a sink, over its distinct ids. A deleted record keeps its last
/// state, marked with its deletion time, which is also its version: an edit or re-creation
/// after the deletion wins over it as any newer version does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteOutcome {
    /// Marked deleted now.
    pub marked: u64,
    /// Already marked deleted at that time.
    pub already_marked: u64,
    /// Held at a newer version (edited or re-created after the deletion): kept alive.
    pub newer_kept: u64,
    /// Never held: nothing to mark.
    pub not_held: u64,
}

pub trait Sink: Send + Sync {
    /// Short name for logs and reports (`txt`, `postgres`).
    fn name(&self) -> &str;

    /// Where the data goes, for humans (a path, a table).
    fn target(&self) -> String;

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>>;

    /// Marks deleted records, atomically and idempotently (see [`DeleteOutcome`]). The RAW
    /// sinks do; a stage, which only carries fetched records to their export, does not.
    fn delete(&self, batch: Arc<DeleteBatch>) -> BoxFuture<'_, Result<DeleteOutcome, Error>> {
        let _ = batch;
        let name = self.name().to_string();
        Box::pin(async move { Err(Error::Sink(format!("the {name} sink does not record deletions"))) })
    }

    /// What this sink holds of `realm_id`'s records and how far its last sync brought it.
    fn sync_view<'a>(&'a self, realm_id: &'a str) -> BoxFuture<'a, Result<SyncView, Error>> {
        let _ = realm_id;
        Box::pin(async move { Err(self.cannot_sync()) })
    }

    /// The ids held for `realm_id` and not marked deleted: what a reconciliation checks
    /// against QuickBooks.
    fn live_ids<'a>(&'a self, realm_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let _ = realm_id;
        Box::pin(async move { Err(self.cannot_sync()) })
    }

    /// Saves how far a sync brought this sink (see [`SyncState`] for when it may be called).
    fn save_sync_state<'a>(&'a self, realm_id: &'a str, state: SyncState) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (realm_id, state);
        Box::pin(async move { Err(self.cannot_sync()) })
    }

    #[doc(hidden)]
    fn cannot_sync(&self) -> Error {
        Error::Sink(format!("the {} sink cannot be synced: sync writes to the txt and postgres sinks", self.name()))
    }

    /// About how many payload bytes this sink likes per batch: every batch costs it a fixed
    /// price (an fsync, a transaction), paid against the memory the batch holds.
    fn batch_bytes(&self) -> usize {
        2 << 20
    }

    /// Whether a window should fetch its next batch while this sink writes the previous one.
    /// It then holds two batches in memory instead of one, so a sink asks for it only when a
    /// write mostly waits: on a PostgreSQL transaction, or on the JSON-lines writer thread's
    /// group commit and its fsyncs.
    fn overlap_writes(&self) -> bool {
        false
    }
}

/// Which RAW destinations a run writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Txt,
    Postgres,
    Both,
}

impl SinkKind {
    pub fn writes_txt(self) -> bool {
        matches!(self, SinkKind::Txt | SinkKind::Both)
    }

    pub fn writes_postgres(self) -> bool {
        matches!(self, SinkKind::Postgres | SinkKind::Both)
    }

    /// The [`Sink::name`]s of the sinks this kind opens.
    pub fn sink_names(self) -> Vec<&'static str> {
        [(self.writes_txt(), jsonl::NAME), (self.writes_postgres(), postgres::NAME)].into_iter().filter_map(|(on, name)| on.then_some(name)).collect()
    }
}

impl std::str::FromStr for SinkKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "txt" | "jsonl" => Ok(SinkKind::Txt),
            "postgres" | "postgresql" | "pg" => Ok(SinkKind::Postgres),
            "both" => Ok(SinkKind::Both),
            _ => Err(Error::config(format!("unknown sink {s:?}: expected txt, postgres or both"))),
        }
    }
}

/// Where a run writes, as its caller says it: the one definition of the sink options, their
/// defaults and how they become [`SinkOptions`].
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub kind: SinkKind,
    pub data_dir: std::path::PathBuf,
    /// fsync each batch (survives power loss, not just a killed process).
    pub fsync: bool,
    /// PostgreSQL DSN; without it the `POSTGRES_*` variables.
    pub dsn: Option<String>,
    pub pg_schema: String,
    pub pg_table_prefix: String,
    /// A PostgreSQL target built already; it wins over `dsn`, `pg_schema`, `pg_table_prefix`.
    pub postgres: Option<postgres::PostgresOptions>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Txt,
            data_dir: "data".into(),
            fsync: true,
            dsn: None,
            pg_schema: "raw".into(),
            pg_table_prefix: "qb_".into(),
            postgres: None,
        }
    }
}

impl SinkConfig {
    /// The options that say which PostgreSQL tables (besides a built `postgres` target): what a
    /// read of a RAW table takes.
    pub const POSTGRES_NAMES: &'static [&'static str] = &["dsn", "pg_schema", "pg_table_prefix"];

    /// The sinks to open, with the PostgreSQL target (if written to) built and checked; no I/O.
    pub fn resolve(&self) -> Result<SinkOptions, Error> {
        let postgres = match self.kind.writes_postgres() {
            false => None,
            true => Some(self.postgres_target()?),
        };
        let options = SinkOptions { kind: self.kind, data_dir: self.data_dir.clone(), fsync: self.fsync, postgres };
        options.validate()?;
        Ok(options)
    }

    /// The PostgreSQL tables: `postgres` if built already, else from `dsn` (or the `POSTGRES_*`
    /// variables), `pg_schema` and `pg_table_prefix`, checked; no I/O.
    pub fn postgres_target(&self) -> Result<postgres::PostgresOptions, Error> {
        match &self.postgres {
            Some(target) => Ok(target.clone()),
            None => postgres::PostgresOptions::from_dsn_or_env(self.dsn.as_deref(), &self.pg_schema, &self.pg_table_prefix),
        }
    }
}

impl crate::options::OptionSet for SinkConfig {
    const NAMES: &'static [&'static str] = &["sink", "data_dir", "fsync", "dsn", "pg_schema", "pg_table_prefix"];

    fn set(&mut self, name: &str, value: &crate::options::OptionValue) -> Result<(), Error> {
        match name {
            "sink" => self.kind = value.text(name)?.parse()?,
            "data_dir" => self.data_dir = value.path(name)?,
            "fsync" => self.fsync = value.boolean(name)?,
            "dsn" => self.dsn = value.optional_text(name)?,
            "pg_schema" => self.pg_schema = value.text(name)?,
            "pg_table_prefix" => self.pg_table_prefix = value.text(name)?,
            _ => return Err(crate::options::unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// Everything needed to open the sinks of a run.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub kind: SinkKind,
    pub data_dir: std::path::PathBuf,
    /// fsync each batch (survives power loss, not just a killed process).
    pub fsync: bool,
    /// Required when `kind` writes to PostgreSQL.
    pub postgres: Option<postgres::PostgresOptions>,
}

impl SinkOptions {
    pub fn validate(&self) -> Result<(), Error> {
        if self.kind.writes_postgres() && self.postgres.is_none() {
            return Err(Error::config("sink postgres needs a database: pass a DSN or set POSTGRES_HOST, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD"));
        }
        Ok(())
    }
}

/// A run writes somewhere: refuses an empty list of sinks.
pub fn require_one(sinks: &[Arc<dyn Sink>]) -> Result<(), Error> {
    if sinks.is_empty() {
        return Err(Error::config("no sink configured: choose txt, postgres or both"));
    }
    Ok(())
}

/// Opens the sinks of a run: the JSON-lines file (repairing it if a previous run was killed
/// mid-write) and/or the PostgreSQL table (connecting, creating it if missing, checking
/// privileges), so configuration problems surface before any request to QBO.
pub async fn open_sinks(entity: Entity, options: &SinkOptions) -> Result<Vec<Arc<dyn Sink>>, Error> {
    options.validate()?;
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if options.kind.writes_txt() {
        let (dir, fsync) = (options.data_dir.clone(), options.fsync);
        let jsonl = tokio::task::spawn_blocking(move || jsonl::JsonlSink::open(&dir, entity, fsync))
            .await
            .map_err(|e| Error::Sink(format!("opening the JSON-lines file failed: {e}")))??;
        sinks.push(Arc::new(jsonl));
    }
    if let (true, Some(pg)) = (options.kind.writes_postgres(), &options.postgres) {
        sinks.push(Arc::new(postgres::PostgresSink::open(pg, entity).await?));
    }
    Ok(sinks)
}
