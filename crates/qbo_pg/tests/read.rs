//! Reading a RAW table back (`PgWriter::read_rows`) against a real PostgreSQL (QBO_RS_TEST_DSN;
//! see tests/common): chunks, filters, an early stop, and the errors that say what to fix.

mod common;

use common::*;
use qbo_pg::{Deletion, PgError, PgWriter, RowFilter, StoredRow};

/// The rows `filter` hands over, chunk by chunk, stopping after `stop_after` chunks.
async fn chunks(w: &PgWriter, f: &Fixture, filter: &RowFilter, chunk_rows: usize, stop_after: usize) -> (Vec<Vec<StoredRow>>, u64) {
    let mut seen = Vec::new();
    let handed = w
        .read_rows(&f.table("qb_invoices"), filter, chunk_rows, |chunk| {
            seen.push(chunk);
            let more = seen.len() < stop_after;
            async move { more }
        })
        .await
        .unwrap();
    (seen, handed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_come_back_in_chunks_as_written_and_filtered() {
    let Some(dsn) = test_dsn("rows_come_back_in_chunks_as_written_and_filtered") else { return };
    let f = Fixture::new(&dsn).await;
    let t = f.table("qb_invoices");
    let w = PgWriter::connect(&f.config).await.unwrap();
    w.ensure_table(&t).await.unwrap();
    let owned: Vec<OwnedRow> = (0..25).map(|i| OwnedRow::new(format!("r{i:02}"), i, i + 1, 200)).collect();
    let rows: Vec<_> = owned.iter().map(OwnedRow::raw).collect();
    w.upsert(&t, &rows).await.unwrap();
    w.mark_deleted(&t, &[Deletion { id: "r03", deleted_at_utc: ts(100) }], ts(100)).await.unwrap();

    let (seen, handed) = chunks(&w, &f, &RowFilter::default(), 10, usize::MAX).await;
    assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(handed, 25);
    let mut all: Vec<StoredRow> = seen.into_iter().flatten().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let r07 = &all[7];
    assert_eq!((r07.id.as_str(), r07.sync_token, r07.last_updated_utc, r07.realm_id.as_str()), ("r07", 8, ts(7), "realm-1"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r07.payload_json).unwrap(), serde_json::from_slice::<serde_json::Value>(&owned[7].payload).unwrap());
    assert_eq!((r07.page_number, r07.page_size, r07.extract_window_end_utc, r07.deleted_at_utc), (1, 1000, ts(86_400), None));
    assert_eq!(all[3].deleted_at_utc, Some(ts(100)));

    let live = RowFilter { live_only: true, ..RowFilter::default() };
    let (seen, handed) = chunks(&w, &f, &live, 100, usize::MAX).await;
    assert_eq!((seen.len(), handed), (1, 24));
    assert!(seen[0].iter().all(|r| r.id != "r03"));

    let other_realm = RowFilter { realm_id: Some("realm-2".into()), live_only: false };
    assert_eq!(chunks(&w, &f, &other_realm, 100, usize::MAX).await.1, 0);
    let this_realm = RowFilter { realm_id: Some("realm-1".into()), live_only: false };
    assert_eq!(chunks(&w, &f, &this_realm, 100, usize::MAX).await.1, 25);

    // A consumer that stops ends the read there, and the session is usable again.
    let (seen, handed) = chunks(&w, &f, &RowFilter::default(), 4, 2).await;
    assert_eq!((seen.len(), handed), (2, 8));
    assert_eq!(w.count(&t).await.unwrap(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_says_what_to_do() {
    let Some(dsn) = test_dsn("a_missing_table_says_what_to_do") else { return };
    let f = Fixture::new(&dsn).await;
    let w = PgWriter::connect(&f.config).await.unwrap();
    let t = f.table("qb_items");
    let err = w.check_readable(&t).await.unwrap_err();
    assert!(matches!(err, PgError::Config(_)), "{err:?}");
    assert!(err.to_string().contains(&format!("table {} does not exist: nothing was written there yet", t.quoted())), "{err}");
    let err = w.read_rows(&t, &RowFilter::default(), 10, |_| async { true }).await.unwrap_err();
    assert!(matches!(err, PgError::Config(_)), "{err:?}");
    w.ensure_table(&t).await.unwrap();
    w.check_readable(&t).await.unwrap();
}
