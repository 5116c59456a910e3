//! `sync` against the emulator: a first sync reads everything, a second with no change costs
//! one CDC call and one count and writes nothing, edits come in as updates, and the state is
//! saved beside the data.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use qbo_core::sink::jsonl::JsonlSink;
use qbo_core::sink::Sink;
use qbo_core::stop::StopSignal;
use qbo_core::sync::{run_sync, SyncMode, SyncRequest};
use qbo_core::Entity;

/// The file's live lines: id -> (last_updated_utc, sync_token).
fn held(dir: &std::path::Path, entity: Entity) -> HashMap<String, (String, String)> {
    std::fs::read_to_string(dir.join(format!("{}.txt", entity.plural())))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("deleted_at_utc").is_none_or(|d| d.is_null()))
        .map(|v| (v["id"].as_str().unwrap().to_string(), (v["last_updated_utc"].as_str().unwrap().to_string(), v["sync_token"].as_str().unwrap().to_string())))
        .collect()
}

fn truth(emu: &qbo_emulator::Emulator, entity: Entity) -> HashMap<String, (String, String)> {
    emu.truth(entity.qbo_name()).unwrap().into_iter().map(|r| (r.id, (qbo_core::time::format_utc(r.last_updated_utc), r.sync_token))).collect()
}

fn txt_sink() -> (tempfile::TempDir, Arc<dyn Sink>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(JsonlSink::open(dir.path(), Entity::Invoice, false).unwrap());
    (dir, sink)
}

async fn sync(client: &qbo_core::QboClient, sink: &Arc<dyn Sink>) -> qbo_core::sync::SyncReport {
    run_sync(client, vec![Arc::clone(sink)], &SyncRequest::new(Entity::Invoice), None, &StopSignal::new()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_reads_all_then_only_changes() {
    let (emu, client) = common::emulator_and_client(3_000).await;
    let (dir, sink) = txt_sink();

    let first = sync(&client, &sink).await;
    assert_eq!(first.mode, SyncMode::Initial);
    assert!(first.ok(), "{:?}", first.read.failed());
    assert_eq!(first.rows().inserted, 3_000);
    assert_eq!(first.requests.cdc, 0, "nothing held: nothing to sweep");
    assert_eq!(held(dir.path(), Entity::Invoice), truth(&emu, Entity::Invoice));

    let second = sync(&client, &sink).await;
    assert_eq!(second.mode, SyncMode::Incremental);
    assert!(second.ok());
    assert_eq!((second.rows().inserted, second.rows().updated), (0, 0));
    assert_eq!(second.requests.cdc, 1);
    assert_eq!(second.requests.api_calls(), 2, "one CDC call and one count: {:?}", second.requests);

    let edited: Vec<String> = ["5", "77", "2999"].iter().map(|id| emu.edit("Invoice", id).unwrap().id).collect();
    // A sync reads up to the last whole second before QuickBooks' clock: a change within that
    // second is the next sync's.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let third = sync(&client, &sink).await;
    assert_eq!(third.mode, SyncMode::Incremental);
    assert_eq!(third.rows().updated, edited.len() as u64);
    assert_eq!(third.rows().inserted, 0);
    assert_eq!(held(dir.path(), Entity::Invoice), truth(&emu, Entity::Invoice));
    assert!(dir.path().join(".qbo_rs").read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".sync-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_marked_and_a_capped_sweep_reconciles() {
    let (emu, client) = common::emulator_and_client(2_000).await;
    let (dir, sink) = txt_sink();
    sync(&client, &sink).await;
    let held_before: std::collections::HashSet<String> = held(dir.path(), Entity::Invoice).into_keys().collect();

    // A few deletions: the incremental sweep finds them, a query confirms them.
    for id in ["10", "11", "1999"] {
        emu.delete("Invoice", id).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let swept = sync(&client, &sink).await;
    assert_eq!(swept.mode, SyncMode::Incremental);
    assert_eq!((swept.deletions_found, swept.marked_deleted(), swept.deletions_refuted), (3, 3, 0));
    assert_eq!(held(dir.path(), Entity::Invoice), truth(&emu, Entity::Invoice));

    // More changes than one CDC answer holds (1,000 objects): CDC cannot prove the deletions,
    // so the sync reads everything and marks what QuickBooks no longer has.
    for id in 100..1100 {
        emu.edit("Invoice", &id.to_string()).unwrap();
    }
    for id in ["30", "31"] {
        emu.delete("Invoice", id).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reconciled = sync(&client, &sink).await;
    assert!(matches!(reconciled.mode, SyncMode::Reconciliation { ref reason } if reason.contains("cap")), "{:?}", reconciled.mode);
    assert_eq!((reconciled.marked_deleted(), reconciled.rows().updated), (2, 1000));
    assert!(reconciled.ok());
    assert_eq!(held(dir.path(), Entity::Invoice), truth(&emu, Entity::Invoice));
    let gone: std::collections::HashSet<String> = emu.deleted("Invoice").unwrap().into_iter().map(|d| d.id).collect();
    let marked: std::collections::HashSet<String> = held_before.difference(&held(dir.path(), Entity::Invoice).into_keys().collect()).cloned().collect();
    assert_eq!(marked, gone);
}
