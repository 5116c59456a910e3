//! Where fetched records land. A sink writes one batch atomically and idempotently: the
//! newest version of each id wins, re-writing a batch changes nothing, and a crash leaves
//! the batch either fully applied or not at all.

pub mod jsonl;
pub mod record;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::entity::Entity;
use crate::error::Error;
use crate::paginate::FetchedRecord;
use crate::window::Window;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

pub trait Sink: Send + Sync {
    /// Short name for logs and reports (`txt`, `postgres`).
    fn name(&self) -> &str;

    /// Where the data goes, for humans (a path, a table).
    fn target(&self) -> String;

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>>;
}

/// Which RAW destinations a run writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Txt,
}

impl std::str::FromStr for SinkKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "txt" | "jsonl" | "file" => Ok(SinkKind::Txt),
            "postgres" | "both" => Err(Error::config(format!(
                "sink {s:?} is not available in this build yet: use sink=\"txt\""
            ))),
            other => Err(Error::config(format!("unknown sink {other:?}: expected txt"))),
        }
    }
}

/// Everything needed to open the sinks of a run.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub kind: SinkKind,
    pub data_dir: std::path::PathBuf,
    /// fsync each batch (survives power loss, not just a killed process).
    pub fsync: bool,
}

/// Opens the sinks; blocking (the JSON-lines store may repair a file left by a crash).
pub fn open_sinks(entity: Entity, options: &SinkOptions) -> Result<Vec<Arc<dyn Sink>>, Error> {
    match options.kind {
        SinkKind::Txt => Ok(vec![Arc::new(jsonl::JsonlSink::open(&options.data_dir, entity, options.fsync)?)]),
    }
}
