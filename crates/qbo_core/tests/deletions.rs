//! Deletions in the JSON-lines file: a deleted record keeps its line, rewritten with its
//! deletion time (which is also its version) and its last payload; newest version wins.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use qbo_core::paginate::FetchedRecord;
use qbo_core::sink::jsonl::JsonlSink;
use qbo_core::sink::{DeleteBatch, DeleteOutcome, Deleted, Sink, WriteBatch};
use qbo_core::{Entity, Window};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn record(id: &str, secs: i64, token: u64) -> FetchedRecord {
    let payload = format!(r#"{{"Id":"{id}","SyncToken":"{token}","MetaData":{{"LastUpdatedTime":"{}"}},"Memo":"caf\u00e9  {token}"}}"#, at(secs).to_rfc3339());
    FetchedRecord {
        id: id.into(),
        sync_token: token.to_string(),
        last_updated_utc: at(secs),
        key_ms: at(secs).timestamp_millis(),
        page_number: 1,
        payload: Bytes::from(payload),
    }
}

fn batch(records: Vec<FetchedRecord>) -> Arc<WriteBatch> {
    let window = Window::new(at(0), at(1000), "invoice_backfill");
    Arc::new(WriteBatch { entity: Entity::Invoice, realm_id: "9130".into(), window, page_size: 1000, ingested_at: at(5), records })
}

fn deletions(learnt: i64, gone: &[(&str, i64)]) -> Arc<DeleteBatch> {
    Arc::new(DeleteBatch {
        entity: Entity::Invoice,
        learnt_at: at(learnt),
        deletions: gone.iter().map(|(id, secs)| Deleted { id: id.to_string(), deleted_at: at(*secs) }).collect(),
    })
}

/// The file's lines by id, parsed.
fn lines(dir: &std::path::Path) -> std::collections::HashMap<String, serde_json::Value> {
    std::fs::read_to_string(dir.join("invoices.txt"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["id"].as_str().unwrap().to_string(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_record_keeps_its_line_marked_and_a_newer_version_revives_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = JsonlSink::open(dir.path(), Entity::Invoice, false).unwrap();
    sink.write(batch(vec![record("1", 100, 1), record("2", 100, 4)])).await.unwrap();
    let before = lines(dir.path());

    // 1 deleted after its version: marked. 2 "deleted" before its version (edited since): kept
    // alive. 9 was never held. Two reports of 1: the later one counts.
    let out = sink.delete(deletions(500, &[("1", 140), ("1", 150), ("2", 50), ("9", 150)])).await.unwrap();
    assert_eq!(out, DeleteOutcome { marked: 1, newer_kept: 1, not_held: 1, ..Default::default() });
    let after = lines(dir.path());
    assert_eq!(after.len(), 2, "one line per id, nothing added for the unknown id");
    let one = &after["1"];
    assert_eq!(one["deleted_at_utc"], "2023-11-14T22:15:50Z");
    assert_eq!(one["last_updated_utc"], one["deleted_at_utc"], "the deletion time is the version");
    assert_eq!(one["ingested_at_utc"], "2023-11-14T22:21:40Z");
    assert_eq!(one["payload"], before["1"]["payload"], "the last payload is kept");
    for key in ["realm_id", "entity", "sync_token", "extract_window_start_utc", "extract_window_end_utc", "page_number", "page_size"] {
        assert_eq!(one[key], before["1"][key], "{key} kept");
    }
    assert_eq!(after["2"], before["2"], "a newer record is left as it was");
    assert!(after["2"].get("deleted_at_utc").is_none(), "live lines carry no deletion key");

    // Again: nothing changes, whatever the learning time.
    let out = sink.delete(deletions(600, &[("1", 150)])).await.unwrap();
    assert_eq!(out, DeleteOutcome { already_marked: 1, ..Default::default() });
    assert_eq!(lines(dir.path())["1"], *one);

    // Reopened with its index rebuilt from the data file, the store reads the deletion's
    // version back from the line: an older live copy cannot revive the record, a newer one does.
    drop(sink);
    std::fs::remove_dir_all(dir.path().join(".qbo_rs")).unwrap();
    let sink = JsonlSink::open(dir.path(), Entity::Invoice, false).unwrap();
    let stale = sink.write(batch(vec![record("1", 120, 9)])).await.unwrap();
    assert_eq!(stale.stale, 1);
    let revived = sink.write(batch(vec![record("1", 200, 2)])).await.unwrap();
    assert_eq!(revived.updated, 1);
    let one = &lines(dir.path())["1"];
    assert!(one.get("deleted_at_utc").is_none(), "alive again: {one}");
    assert_eq!(one["sync_token"], "2");
}
