//! The RAW line: the untouched QBO payload plus its lineage. Field order is fixed so a
//! reader can find the identity and version at the start of every line.

use std::io::Write;

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
