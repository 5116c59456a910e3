//! The JSON-lines sink's side of `sync`: its state file beside the store's own files
//! (`data/.qbo_rs/invoices.txt.sync-<realm>.json`, replaced atomically) and what a scan of the
//! committed lines tells about the records held.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use qbo_jsonl::JsonlStore;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::sink::{SyncState, SyncView};

#[derive(Serialize, Deserialize)]
struct StateFile {
    realm_id: String,
    #[serde(flatten)]
    state: SyncState,
}

/// The RAW lineage of a line, as much as a sync needs (the payload is skipped).
#[derive(Deserialize)]
struct Lineage<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    realm_id: std::borrow::Cow<'a, str>,
    last_updated_utc: DateTime<Utc>,
    ingested_at_utc: DateTime<Utc>,
    #[serde(default)]
    deleted_at_utc: Option<DateTime<Utc>>,
}

/// Where the sync state of `realm_id` lives for the data file `data`.
pub(super) fn state_path(data: &Path, realm_id: &str) -> PathBuf {
    let realm: String = realm_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let name = data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    data.parent().unwrap_or(Path::new(".")).join(".qbo_rs").join(format!("{name}.sync-{realm}.json"))
}

pub(super) fn read_state(path: &Path, realm_id: &str) -> Result<Option<SyncState>, Error> {
    let body = match fs::read(path) {
        Ok(body) => body,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Sink(format!("cannot read the sync state {}: {e}", path.display()))),
    };
    let file: StateFile = serde_json::from_slice(&body)
        .map_err(|e| Error::Sink(format!("the sync state {} is unreadable ({e}): delete it and the next sync reconciles", path.display())))?;
    Ok((file.realm_id == realm_id).then_some(file.state))
}

/// Replaces the state file atomically: a crash leaves the old state or the new one.
pub(super) fn write_state(path: &Path, realm_id: &str, state: SyncState) -> Result<(), Error> {
    let body = serde_json::to_vec_pretty(&StateFile { realm_id: realm_id.to_string(), state }).expect("a state serialises");
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::Sink(format!("cannot save the sync state {}: {e}", path.display()))
    })
}

/// Reads every committed line's lineage; `each` gets those of `realm_id`.
fn scan(store: &mut JsonlStore, realm_id: &str, mut each: impl FnMut(Lineage<'_>)) -> Result<(), String> {
    let mut unreadable = None;
    store
        .for_each_line(|line| match serde_json::from_slice::<Lineage<'_>>(line) {
            Ok(l) if l.realm_id == realm_id => each(l),
            Ok(_) => {}
            Err(e) => {
                unreadable.get_or_insert(e.to_string());
            }
        })
        .map_err(|e| e.to_string())?;
    match unreadable {
        Some(e) => Err(format!("{}: a line's lineage cannot be read ({e})", store.path().display())),
        None => Ok(()),
    }
}

pub(super) fn scan_view(store: &mut JsonlStore, realm_id: &str) -> Result<SyncView, String> {
    let mut view = SyncView::default();
    scan(store, realm_id, |l| view.hold(l.last_updated_utc, l.ingested_at_utc, l.deleted_at_utc.is_some()))?;
    Ok(view)
}

pub(super) fn scan_live_ids(store: &mut JsonlStore, realm_id: &str) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    scan(store, realm_id, |l| {
        if l.deleted_at_utc.is_none() {
            ids.push(l.id.into_owned());
        }
    })?;
    Ok(ids)
}
