//! Tie groups (one second holding more records than half a page, as bulk imports make) in a
//! range counted before the read, which nothing can enter: they are read on from where the
//! keyset page left them, without counts, and read again with counts only when an edit during
//! the read made an offset slip and the read came up short of the plan's count.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use qbo_core::paginate::{FetchedRecord, PageSink, WindowReader};
use qbo_core::{query, Entity, Error, FilterField, QboClient, Window};
use qbo_emulator::Emulator;

mod common;

/// 8,000 invoices hold a bulk import of 200 in one second and bursts of 50..=600: each group is
/// several pages of 50.
const INVOICES: usize = 8000;
const PAGE: u32 = 50;

/// The emulator's whole span, which ended long before the read.
fn past_range() -> Window {
    Window { start: Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).unwrap(), end: Utc.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap(), label: "all".into() }
}

/// Keeps the newest version read of each id; with `edit_during_a_tie`, edits (moves to "now")
/// a record of a tie group already read as soon as a full page of that group arrives, so the
/// group's next page, read by offset, skips one record.
struct Collect<'a> {
    emu: &'a Emulator,
    edit_during_a_tie: bool,
    held: Mutex<HashMap<String, (i64, u64)>>,
    /// The last record of the previous page: its filter key and id.
    last: Mutex<Option<(i64, String)>>,
    edited: Mutex<Option<String>>,
}

impl PageSink for Collect<'_> {
    async fn before_fetch(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn accept(&self, records: Vec<FetchedRecord>) -> Result<(), Error> {
        let mut last = self.last.lock().unwrap();
        let mut edited = self.edited.lock().unwrap();
        if let Some((key, id)) = last.as_ref() {
            let full_page_of_one_tie = records.len() == PAGE as usize && records.iter().all(|r| r.key_ms == *key);
            if self.edit_during_a_tie && edited.is_none() && full_page_of_one_tie {
                self.emu.edit("Invoice", id).unwrap();
                *edited = Some(id.clone());
            }
        }
        let mut held = self.held.lock().unwrap();
        for r in &records {
            held.insert(r.id.clone(), r.version());
        }
        *last = records.last().map(|r| (r.key_ms, r.id.clone()));
        Ok(())
    }
}

fn in_range_truth(emu: &Emulator, range: &Window) -> HashMap<String, DateTime<Utc>> {
    emu.truth("Invoice")
        .unwrap()
        .into_iter()
        .filter(|t| range.start <= t.last_updated_utc && t.last_updated_utc < range.end)
        .map(|t| (t.id, t.last_updated_utc))
        .collect()
}

/// Reads the past range with its count taken first, as a plan does; returns what the read
/// reported, the ids it holds and the count.
async fn read_counted(
    emu: &Emulator,
    client: &QboClient,
    edit_during_a_tie: bool,
) -> (qbo_core::paginate::WindowFetch, HashMap<String, (i64, u64)>, Option<String>, u64) {
    let range = past_range();
    let counted = client.count(Entity::Invoice, &query::count_statement(Entity::Invoice, FilterField::LastUpdatedTime, range.start, range.end)).await.unwrap();
    let sink = Collect { emu, edit_during_a_tie, held: Mutex::default(), last: Mutex::default(), edited: Mutex::default() };
    let fetch = WindowReader::new(client, Entity::Invoice, FilterField::LastUpdatedTime, &range, PAGE, &sink).expecting(counted).run().await.unwrap();
    (fetch, sink.held.into_inner().unwrap(), sink.edited.into_inner().unwrap(), counted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tie_groups_of_a_counted_past_range_cost_no_counts() {
    let (emu, client) = common::emulator_and_client(INVOICES).await;
    let (fetch, held, _, counted) = read_counted(&emu, &client, false).await;
    assert!(fetch.tie_groups >= 2, "the data must hold tie groups for this test to mean anything: {fetch:?}");
    assert_eq!(fetch.count_requests, 0, "no count for the ties nor to close the range: {fetch:?}");
    assert_eq!(fetch.tie_rechecks, 0);
    assert_eq!(fetch.records, counted);
    let truth = in_range_truth(&emu, &past_range());
    assert_eq!(held.len(), truth.len());
    assert!(truth.keys().all(|id| held.contains_key(id)));
    // Read the careful way (no count to trust), each group costs a count before, all its pages
    // from its first record, and a count after; read on from the keyset page, only the rest of
    // its pages.
    let range = past_range();
    let sink = Collect { emu: &emu, edit_during_a_tie: false, held: Mutex::default(), last: Mutex::default(), edited: Mutex::default() };
    let careful = WindowReader::new(&client, Entity::Invoice, FilterField::LastUpdatedTime, &range, PAGE, &sink).run().await.unwrap();
    assert_eq!(careful.tie_groups, fetch.tie_groups);
    assert!(careful.tie_requests >= fetch.tie_requests + 2 * fetch.tie_groups, "careful {careful:?}, trusting the count {fetch:?}");
    assert_eq!(sink.held.into_inner().unwrap(), held);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tie_group_that_slips_under_an_edit_is_read_again_with_counts_and_nothing_is_lost() {
    let (emu, client) = common::emulator_and_client(INVOICES).await;
    let (fetch, held, edited, _) = read_counted(&emu, &client, true).await;
    let edited = edited.expect("a full page of a tie group arrived, and a record of the group was edited");
    assert!(fetch.tie_rechecks >= 1, "the read came up short and read its ties again: {fetch:?}");
    assert!(fetch.count_requests >= 2, "the recheck counts the group before and after: {fetch:?}");
    let truth = in_range_truth(&emu, &past_range());
    assert!(!truth.contains_key(&edited), "the edited record moved out of the range");
    let missing: Vec<_> = truth.keys().filter(|id| !held.contains_key(*id)).collect();
    assert!(missing.is_empty(), "records lost: {missing:?}");
    emu.shutdown().await;
}
