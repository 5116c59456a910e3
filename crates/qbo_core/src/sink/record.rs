//! The RAW line: the untouched QBO payload plus its lineage. Field order is fixed so a
//! reader can find the identity and version at the start of every line.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::paginate::FetchedRecord;
use crate::sink::WriteBatch;
use crate::time::format_utc;

/// Serialises one record as a compact JSON object:
/// `{"id":…,"realm_id":…,"entity":…,"last_updated_utc":…,"sync_token":…,"ingested_at_utc":…,
///   "extract_window_start_utc":…,"extract_window_end_utc":…,"page_number":…,"page_size":…,
///   "payload":{…exactly as QBO sent it…}}`
pub fn raw_line(batch: &WriteBatch, record: &FetchedRecord, prefix: &LinePrefix, out: &mut Vec<u8>) {
    out.reserve(prefix.len_estimate() + record.payload.len());
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, &record.id);
    out.extend_from_slice(prefix.realm_entity.as_bytes());
    out.extend_from_slice(b",\"last_updated_utc\":\"");
    out.extend_from_slice(format_utc(record.last_updated_utc).as_bytes());
    out.extend_from_slice(b"\",\"sync_token\":");
    write_json_str(out, &record.sync_token);
    out.extend_from_slice(prefix.tail.as_bytes());
    let _ = write!(out, "{},\"page_size\":{},\"payload\":", record.page_number, batch.page_size);
    out.extend_from_slice(&record.payload);
    out.push(b'}');
}

/// The parts of a line shared by a whole batch, rendered once.
pub struct LinePrefix {
    realm_entity: String,
    tail: String,
}

impl LinePrefix {
    /// About how many bytes a line adds around its payload (for sizing buffers): the shared
    /// parts plus room for the id, timestamps, sync token and page fields.
    pub fn len_estimate(&self) -> usize {
        self.realm_entity.len() + self.tail.len() + 192
    }

    pub fn new(batch: &WriteBatch) -> Self {
        let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
        LinePrefix {
            realm_entity: format!(",\"realm_id\":{},\"entity\":{}", q(&batch.realm_id), q(batch.entity.qbo_name())),
            tail: format!(
                ",\"ingested_at_utc\":{},\"extract_window_start_utc\":{},\"extract_window_end_utc\":{},\"page_number\":",
                q(&format_utc(batch.ingested_at)),
                q(&format_utc(batch.window.start)),
                q(&format_utc(batch.window.end))
            ),
        }
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// The identity and version of a RAW line, read back when an index must be rebuilt.
#[derive(serde::Deserialize)]
pub struct LineHead<'a> {
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub last_updated_utc: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub sync_token: std::borrow::Cow<'a, str>,
}

/// A stored RAW line as a deletion rewrites it: every field kept as stored but the version,
/// the ingestion time and the deletion mark.
#[derive(serde::Deserialize)]
struct StoredLine<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    realm_id: &'a RawValue,
    #[serde(borrow)]
    entity: &'a RawValue,
    #[serde(borrow)]
    last_updated_utc: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sync_token: &'a RawValue,
    #[serde(borrow)]
    extract_window_start_utc: &'a RawValue,
    #[serde(borrow)]
    extract_window_end_utc: &'a RawValue,
    #[serde(borrow)]
    page_number: &'a RawValue,
    #[serde(borrow)]
    page_size: &'a RawValue,
    #[serde(default, borrow)]
    deleted_at_utc: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// What deleting a stored line at a given time comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum LineDeletion {
    /// The line to store, with its new version (the deletion time, the stored sync token).
    Mark { line: Vec<u8>, updated_at_ms: i64, sync_token: u64 },
    /// Already marked deleted at that time.
    AlreadyMarked,
    /// Stored at the deletion's time or later (edited or re-created since): left alive.
    NewerKept,
}

/// Rewrites the RAW line `stored` as deleted at `deleted_at`, learnt at `learnt_at`: the same
/// fields and payload, `last_updated_utc` (the version) set to the deletion time, and
/// `"deleted_at_utc"` added before the payload. Live lines carry no such key.
pub fn deleted_line(stored: &[u8], deleted_at: DateTime<Utc>, learnt_at: DateTime<Utc>) -> Result<LineDeletion, String> {
    let line: StoredLine<'_> = serde_json::from_slice(stored).map_err(|e| format!("a stored line cannot be read ({e})"))?;
    let stored_at = DateTime::parse_from_rfc3339(&line.last_updated_utc).map_err(|e| format!("a stored line's last_updated_utc cannot be read ({e})"))?;
    let deleted_text = format_utc(deleted_at);
    if line.deleted_at_utc.as_deref() == Some(deleted_text.as_str()) {
        return Ok(LineDeletion::AlreadyMarked);
    }
    if stored_at.timestamp_millis() >= deleted_at.timestamp_millis() {
        return Ok(LineDeletion::NewerKept);
    }
    let sync_token = serde_json::from_str::<std::borrow::Cow<'_, str>>(line.sync_token.get()).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
    let mut out = Vec::with_capacity(stored.len() + 64);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(line.id.get().as_bytes());
    for (key, value) in [("realm_id", line.realm_id.get()), ("entity", line.entity.get())] {
        let _ = write!(out, ",\"{key}\":{value}");
    }
    let _ = write!(out, ",\"last_updated_utc\":\"{deleted_text}\",\"sync_token\":{}", line.sync_token.get());
    let _ = write!(out, ",\"ingested_at_utc\":\"{}\"", format_utc(learnt_at));
    for (key, value) in [
        ("extract_window_start_utc", line.extract_window_start_utc.get()),
        ("extract_window_end_utc", line.extract_window_end_utc.get()),
        ("page_number", line.page_number.get()),
        ("page_size", line.page_size.get()),
    ] {
        let _ = write!(out, ",\"{key}\":{value}");
    }
    let _ = write!(out, ",\"deleted_at_utc\":\"{deleted_text}\",\"payload\":");
    out.extend_from_slice(line.payload.get().as_bytes());
    out.push(b'}');
    Ok(LineDeletion::Mark { line: out, updated_at_ms: deleted_at.timestamp_millis(), sync_token })
}
