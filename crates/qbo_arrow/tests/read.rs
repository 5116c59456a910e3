//! A RAW file as qbo_rs writes it, read back as Arrow batches.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatchReader};
use arrow_schema::{DataType, TimeUnit};
use qbo_arrow::{RawEntity, RawFileReader, ReadError};

const LINE: &str = r#"{"id":"ID","realm_id":"9130","entity":"Invoice","last_updated_utc":"2025-02-04T16:01:55Z","sync_token":"3","ingested_at_utc":"2026-11-24T07:12:03.123Z","extract_window_start_utc":"2025-01-01T00:00:00Z","extract_window_end_utc":"2025-02-20T00:00:00Z","page_number":3,"page_size":1000,"payload":PAYLOAD}"#;

fn line(id: &str, payload: &str) -> String {
    LINE.replace("ID", id).replace("PAYLOAD", payload)
}

fn write(lines: &[String], tail: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    text.push_str(tail);
    std::fs::write(dir.path().join("invoices.txt"), text).unwrap();
    dir
}

#[test]
fn lineage_typed_fields_and_payload_in_batches() {
    let full =
        r#"{"Id":"1","TxnDate":"2025-02-03","DocNumber":"1001","TotalAmt":639.00,"Balance":12.5,"CustomerRef":{"value":"58","name":"Amy's Bird"},"Line":[]}"#;
    let bare = r#"{"Id":"2"}"#;
    let deleted = line("3", full).replace(r#","payload""#, r#","deleted_at_utc":"2025-03-01T10:00:00Z","payload""#);
    // A last line without its newline is a write in progress: left out.
    let dir = write(&[line("1", full), format!("  {}  ", line("2", bare)), deleted], r#"{"id":"4","#);
    let mut reader = RawFileReader::open(&dir.path().join("invoices.txt"), None, 2).unwrap();
    assert_eq!(reader.entity(), RawEntity::Invoice);
    let schema = reader.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "realm_id",
            "entity",
            "last_updated_utc",
            "sync_token",
            "ingested_at_utc",
            "extract_window_start_utc",
            "extract_window_end_utc",
            "page_number",
            "page_size",
            "deleted_at_utc",
            "txn_date",
            "doc_number",
            "total_amt",
            "balance",
            "customer_ref",
            "customer_name",
            "payload"
        ]
    );
    assert_eq!(schema.field_with_name("last_updated_utc").unwrap().data_type(), &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())));
    assert_eq!(schema.field_with_name("total_amt").unwrap().data_type(), &DataType::Decimal128(38, 6));

    let first = reader.next().unwrap().unwrap();
    let second = reader.next().unwrap().unwrap();
    assert!(reader.next().is_none());
    assert_eq!((first.num_rows(), second.num_rows()), (2, 1), "batches of at most 2 rows");

    let col = |name: &str| first.column_by_name(name).unwrap().clone();
    assert_eq!(col("id").as_string::<i32>().value(1), "2");
    assert_eq!(col("last_updated_utc").as_primitive::<TimestampMillisecondType>().value(0), 1_738_684_915_000);
    assert_eq!(col("ingested_at_utc").as_primitive::<TimestampMillisecondType>().value(0) % 1000, 123);
    assert_eq!(col("sync_token").as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(col("txn_date").as_primitive::<Date32Type>().value(0), 20_122, "2025-02-03 in days since 1970");
    assert_eq!(col("total_amt").as_primitive::<Decimal128Type>().value(0), 639_000_000);
    assert_eq!(col("balance").as_primitive::<Decimal128Type>().value(0), 12_500_000);
    assert_eq!(col("customer_ref").as_string::<i32>().value(0), "58");
    assert_eq!(col("customer_name").as_string::<i32>().value(0), "Amy's Bird");
    assert_eq!(col("payload").as_string::<i32>().value(0), full, "the payload exactly as stored");
    for name in ["txn_date", "doc_number", "total_amt", "balance", "customer_ref", "customer_name", "deleted_at_utc"] {
        assert!(col(name).is_null(1), "{name} is null where the record lacks it");
    }
    let deleted_at = second.column_by_name("deleted_at_utc").unwrap();
    assert_eq!(deleted_at.as_primitive::<TimestampMillisecondType>().value(0), 1_740_823_200_000);
}

#[test]
fn a_line_that_is_not_a_raw_record_names_its_number() {
    let dir = write(&[line("1", "{}"), "{\"not\":\"raw\"}".into()], "");
    let mut reader = RawFileReader::open(&dir.path().join("invoices.txt"), None, 10).unwrap();
    let err = reader.next().unwrap().unwrap_err().to_string();
    assert!(err.contains("invoices.txt line 2"), "{err}");
    assert!(reader.next().is_none());
}

#[test]
fn the_entity_comes_from_the_name_or_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("export.jsonl");
    std::fs::write(&other, format!("{}\n", line("1", "{}").replace("\"Invoice\"", "\"Customer\""))).unwrap();
    let reader = RawFileReader::open(&other, None, 10).unwrap();
    assert_eq!(reader.entity(), RawEntity::Customer);
    assert_eq!(reader.schema().fields().iter().filter(|f| f.name() == "display_name").count(), 1);
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(RawFileReader::open(&empty, None, 10), Err(ReadError::Entity(_))));
    // A file of another entity than the one asked for fails at its first record.
    let mut wrong = RawFileReader::open(&other, Some(RawEntity::Item), 10).unwrap();
    assert!(wrong.next().unwrap().unwrap_err().to_string().contains("a Customer record in a file of Items"));
}
