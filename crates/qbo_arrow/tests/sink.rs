//! The in-memory Arrow sink keeps each id once, at its newest version, whatever order the
//! versions come in.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use qbo_arrow::ArrowSink;
use qbo_core::paginate::FetchedRecord;
use qbo_core::sink::{Sink, WriteBatch, WriteOutcome};
use qbo_core::{Entity, Window};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, minute, 0).unwrap()
}

fn record(id: &str, token: u32, minute: u32) -> FetchedRecord {
    let payload = format!(r#"{{"Id":"{id}","SyncToken":"{token}","DisplayName":"C{id}v{token}","Active":true,"Balance":1.5}}"#);
    FetchedRecord {
        id: id.into(),
        sync_token: token.to_string(),
        last_updated_utc: at(minute),
        key_ms: at(minute).timestamp_millis(),
        page_number: 1,
        payload: Bytes::from(payload),
    }
}

fn batch(records: Vec<FetchedRecord>) -> Arc<WriteBatch> {
    let window = Window { start: at(0), end: at(59), label: "customer_backfill_2025-03-01".into() };
    Arc::new(WriteBatch { entity: Entity::Customer, realm_id: "r".into(), window, page_size: 100, ingested_at: at(59), records })
}

#[tokio::test]
async fn each_id_once_at_its_newest_version() {
    let sink = ArrowSink::new(Entity::Customer);
    let first = sink.write(batch(vec![record("1", 0, 1), record("2", 3, 5), record("3", 1, 2)])).await.unwrap();
    assert_eq!(first, WriteOutcome { inserted: 3, ..WriteOutcome::default() });
    let second = sink.write(batch(vec![record("1", 1, 9), record("2", 2, 4), record("3", 1, 2), record("4", 0, 3)])).await.unwrap();
    assert_eq!(second, WriteOutcome { inserted: 1, updated: 1, unchanged: 1, stale: 1 });

    let batches = sink.finish().unwrap();
    let mut held: Vec<(String, i64, String)> = Vec::new();
    for b in &batches {
        let ids = b.column_by_name("id").unwrap().as_string::<i32>();
        let tokens = b.column_by_name("sync_token").unwrap().as_primitive::<Int64Type>();
        let names = b.column_by_name("display_name").unwrap().as_string::<i32>();
        for row in 0..b.num_rows() {
            held.push((ids.value(row).to_string(), tokens.value(row), names.value(row).to_string()));
        }
    }
    held.sort();
    let expected = [("1", 1, "C1v1"), ("2", 3, "C2v3"), ("3", 1, "C3v1"), ("4", 0, "C4v0")];
    assert_eq!(held, expected.map(|(i, t, n)| (i.to_string(), t, n.to_string())));
    assert_eq!(batches[0].schema(), qbo_arrow::RawEntity::Customer.schema());
}
