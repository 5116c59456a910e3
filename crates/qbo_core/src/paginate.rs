//! Reading one window completely, even while records are being edited.
//!
//! Plain STARTPOSITION paging loses records: an edited record jumps to the end and every
//! later one shifts up a place, so one is skipped at the next page boundary. We page by the filter timestamp instead (keyset): each page asks for records
//! `>= the last value seen`, ordered by it, starting at position 1, and drops the ids it
//! already has. Offsets survive in one place only, inside a tie (more records sharing one
//! second than fit in half a page, as bulk imports produce). A tie is read as its own
//! group with `= value`, and because records can only leave a past second (an edit moves
//! them to "now"), a group read whose COUNT is the same before and after saw a stable set;
//! a group that fits in one page is a snapshot by itself. Finally the window's COUNT(*) is
//! compared with what we hold, and a short window is read again.
//!
//! A range counted before the read that nothing can enter (see [`WindowReader::expecting`])
//! needs none of the tie's counts: it reads the group on from where the keyset page left it,
//! and holding exactly the plan's count at the end proves no offset slipped. Only a read that
//! comes up short pays for them, by reading its tie groups again the careful way.

use std::future::Future;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::client::{QboClient, RawPage};
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::head::{self, Head};
use crate::query::{self, MAX_PAGE_SIZE};
use crate::seen::SeenIds;
use crate::time::{parse_qbo_timestamp, qbo_literal};
use crate::window::Window;

/// How often a tie group is re-read when it keeps changing under us before we give up.
const TIE_ATTEMPTS: u32 = 8;

/// One record as fetched: its identity, its version, and the untouched payload bytes.
#[derive(Debug, Clone)]
pub struct FetchedRecord {
    pub id: String,
    pub sync_token: String,
    pub last_updated_utc: DateTime<Utc>,
    /// The filter field's value (LastUpdatedTime, CreateTime or TxnDate) in Unix milliseconds:
    /// the window a record belongs to is the one this falls in.
    pub key_ms: i64,
    pub page_number: u32,
    pub payload: Bytes,
}

impl FetchedRecord {
    /// Newest wins: LastUpdatedTime first, then SyncToken.
    pub fn version(&self) -> (i64, u64) {
        (self.last_updated_utc.timestamp_millis(), self.sync_token.parse().unwrap_or(0))
    }
}

/// What reading a window cost and found.
#[derive(Debug, Clone, Default)]
pub struct WindowFetch {
    pub pages: u32,
    pub count_requests: u32,
    /// Distinct records whose filter value lies in the window.
    pub records: u64,
    /// Records fetched in the window that were edited during the read and now lie after it.
    pub moved_out: u64,
    pub tie_groups: u32,
    /// Requests spent reading tie groups (their counts and pages): the part of a read no plan
    /// can foresee, since only reading finds a second holding more than half a page.
    pub tie_requests: u32,
    /// Tie groups read without counts and then read again with them, because the read came
    /// up short of the plan's count (an edit during the read may have shifted their offsets).
    pub tie_rechecks: u32,
    /// The server's COUNT(*) for the window after the read (None when one page was a snapshot).
    pub server_count: Option<u64>,
    /// Full re-reads needed because the window came up short.
    pub rereads: u32,
}

struct Decoded {
    record: FetchedRecord,
    key: DateTime<Utc>,
}

fn filter_key(field: FilterField, head: &Head<'_>, last_updated: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match field {
        FilterField::LastUpdatedTime => Some(last_updated),
        FilterField::CreateTime => head.create_time.as_deref().and_then(parse_qbo_timestamp),
        FilterField::TxnDate => {
            let d = NaiveDate::parse_from_str(head.txn_date.as_deref()?, "%Y-%m-%d").ok()?;
            Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?))
        }
    }
}

fn key_literal(field: FilterField, key: DateTime<Utc>) -> String {
    match field {
        FilterField::TxnDate => key.format("%Y-%m-%d").to_string(),
        _ => qbo_literal(key),
    }
}

fn decode(page: &RawPage, field: FilterField, page_number: u32) -> Result<Vec<Decoded>, Error> {
    let mut out = Vec::with_capacity(page.len());
    for i in 0..page.len() {
        let payload = page.record(i);
        let head = head::scan(&payload, field == FilterField::TxnDate);
        let id = head.id.as_deref().ok_or_else(|| Error::Decode("a record in the response has no Id".into()))?;
        let last_updated = head
            .last_updated_time
            .as_deref()
            .and_then(parse_qbo_timestamp)
            .ok_or_else(|| Error::Decode(format!("record Id {id} has no valid MetaData.LastUpdatedTime")))?;
        let key = filter_key(field, &head, last_updated).ok_or_else(|| Error::Decode(format!("record Id {id} has no valid {}", field.qbo_property())))?;
        let record = FetchedRecord {
            id: id.to_string(),
            sync_token: head.sync_token.as_deref().unwrap_or("0").to_string(),
            last_updated_utc: last_updated,
            key_ms: key.timestamp_millis(),
            page_number,
            payload: payload.clone(),
        };
        out.push(Decoded { record, key });
    }
    Ok(out)
}

/// Where a window's pages go. Both calls can make the read wait (back-pressure).
pub trait PageSink {
    /// Called before each page is requested: a memory budget can hold the read here.
    fn before_fetch(&self) -> impl Future<Output = Result<(), Error>> + Send;
    /// Takes a page's new records (records not seen before, or seen in an older version).
    fn accept(&self, records: Vec<FetchedRecord>) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Reads `window` completely and hands each page's new records to `sink`.
pub struct WindowReader<'a, S> {
    client: &'a QboClient,
    entity: Entity,
    field: FilterField,
    window: &'a Window,
    page_size: u32,
    sink: &'a S,
    /// Latest version held per id, to drop overlap and keep the newest, and how many ids
    /// fall in the window and in each of `windows`.
    seen: SeenIds,
    /// The windows the records are attributed to (see [`WindowReader::counting_windows`]).
    windows: &'a [Window],
    stats: WindowFetch,
    /// A COUNT of the range taken before the read, trusted as the closing count when the read
    /// holds exactly that many (see [`WindowReader::expecting`]).
    expected: Option<u64>,
    /// Tie groups read without counts, trusting `expected` to reveal a slipped offset; cleared
    /// once the read is proven complete or they are read again with counts.
    unproven_ties: Vec<DateTime<Utc>>,
    /// Set once the read came up short: every tie group from then on is read with counts.
    careful: bool,
}

impl<'a, S: PageSink> WindowReader<'a, S> {
    pub fn new(client: &'a QboClient, entity: Entity, field: FilterField, window: &'a Window, page_size: u32, sink: &'a S) -> Self {
        WindowReader {
            client,
            entity,
            field,
            window,
            page_size,
            sink,
            seen: SeenIds::new(vec![window.start.timestamp_millis(), window.end.timestamp_millis()]),
            windows: &[],
            stats: WindowFetch::default(),
            expected: None,
            unproven_ties: Vec::new(),
            careful: false,
        }
    }

    /// `count` records were in the range when it was counted before the read. When nothing can
    /// have entered the range since (it ended before the read began and the filter field only
    /// moves forward, to "now"), a read that holds exactly `count` records is complete and
    /// needs no closing COUNT: one request saved per range.
    pub fn expecting(mut self, count: u64) -> Self {
        self.expected = Some(count);
        self
    }

    /// Counts the records held per window of `windows` (sorted, non-overlapping), for
    /// [`WindowReader::held_per_window`]. Call before the read: the counts are kept as records
    /// arrive.
    pub fn counting_windows(mut self, windows: &'a [Window]) -> Self {
        let mut boundaries = vec![self.window.start.timestamp_millis(), self.window.end.timestamp_millis()];
        boundaries.extend(windows.iter().flat_map(|w| [w.start.timestamp_millis(), w.end.timestamp_millis()]));
        self.seen = SeenIds::new(boundaries);
        self.windows = windows;
        self
    }

    pub async fn run(&mut self) -> Result<WindowFetch, Error> {
        let snapshot = self.pass().await?;
        if snapshot {
            self.stats.records = self.in_window();
            self.stats.server_count = None;
            return Ok(self.stats.clone());
        }
        if let Some(expected) = self.expected.filter(|e| *e == self.in_window()) {
            // Every record held was in the range when it was counted (nothing can enter it), so
            // holding as many as were counted is holding all of them: no tie group slipped.
            self.unproven_ties.clear();
            self.stats.records = expected;
            self.stats.server_count = Some(expected);
            self.stats.moved_out = self.seen.len() - expected;
            return Ok(self.stats.clone());
        }
        self.careful = true;
        for key in std::mem::take(&mut self.unproven_ties) {
            self.stats.tie_rechecks += 1;
            self.read_tie(key, 0).await?;
        }
        loop {
            let statement = query::count_statement(self.entity, self.field, self.window.start, self.window.end);
            self.stats.count_requests += 1;
            let server = self.client.count(self.entity, &statement).await?;
            let held = self.in_window();
            self.stats.server_count = Some(server);
            self.stats.records = held;
            self.stats.moved_out = self.seen.len() - held;
            if held >= server || self.stats.rereads >= 1 {
                return Ok(self.stats.clone());
            }
            tracing::warn!(target: "qbo_rs", "window {}: QBO counts {server} records but the read found {held}; reading the window again", self.window.label);
            self.stats.rereads += 1;
            self.pass().await?;
        }
    }

    /// The earliest filter value of a tie group read without counts and not yet proven complete
    /// (after a failed read): records from there on may be missing, whatever the pass went past.
    pub fn first_unproven_tie(&self) -> Option<DateTime<Utc>> {
        self.unproven_ties.iter().min().copied()
    }

    fn in_window(&self) -> u64 {
        self.seen.count_between(self.window.start.timestamp_millis(), self.window.end.timestamp_millis())
    }

    /// Distinct records held whose filter value falls in each window given to
    /// [`WindowReader::counting_windows`]: the rows each window fetched.
    pub fn held_per_window(&self) -> Vec<u64> {
        self.windows.iter().map(|w| self.seen.count_between(w.start.timestamp_millis(), w.end.timestamp_millis())).collect()
    }

    /// One keyset pass over the window. Returns true when a single short page answered it,
    /// which is a consistent snapshot on its own.
    async fn pass(&mut self) -> Result<bool, Error> {
        let mut lower = query::bound_literal(self.field, self.window.start);
        let mut lower_op = ">=";
        let mut first = true;
        loop {
            let statement = query::page_statement(self.entity, self.field, &lower, lower_op, self.window.end, self.page_size);
            let page = self.fetch(&statement).await?;
            let n = page.len();
            let Some(last_key) = page.last().map(|d| d.key) else {
                return Ok(first);
            };
            let at_last = page.iter().rev().take_while(|d| d.key == last_key).count();
            self.accept(page).await?;
            if (n as u32) < self.page_size {
                return Ok(first);
            }
            first = false;
            if at_last * 2 > self.page_size as usize {
                // The page holds the group's first `at_last` records (they sort last in it).
                self.read_tie(last_key, at_last as u64).await?;
                lower = query::quote(&key_literal(self.field, last_key));
                lower_op = ">";
            } else {
                lower = query::quote(&key_literal(self.field, last_key));
                lower_op = ">=";
            }
        }
    }

    /// Reads every record whose filter value is exactly `key`, of which the first `held` (in
    /// QuickBooks' order within the group) were just read: on from there, without counts, when
    /// the plan's count will prove the read; else whole and counted, until a read is stable.
    async fn read_tie(&mut self, key: DateTime<Utc>, held: u64) -> Result<(), Error> {
        self.stats.tie_groups += 1;
        let spent_before = self.stats.pages + self.stats.count_requests;
        let result = if self.expected.is_some() && !self.careful {
            self.unproven_ties.push(key);
            self.read_tie_pages(&key_literal(self.field, key), held + 1, self.page_size).await.map(|_| ())
        } else {
            self.read_tie_group(key).await
        };
        self.stats.tie_requests += self.stats.pages + self.stats.count_requests - spent_before;
        result
    }

    /// Pages through the group at `literal` by offset from `position` until a short page;
    /// returns how many pages that took.
    async fn read_tie_pages(&mut self, literal: &str, mut position: u64, page_size: u32) -> Result<u32, Error> {
        let mut pages = 0u32;
        loop {
            let statement = query::tie_page_statement(self.entity, self.field, literal, position, page_size);
            let page = self.fetch(&statement).await?;
            let n = page.len();
            pages += 1;
            self.accept(page).await?;
            if (n as u32) < page_size {
                return Ok(pages);
            }
            position += n as u64;
        }
    }

    async fn read_tie_group(&mut self, key: DateTime<Utc>) -> Result<(), Error> {
        let literal = key_literal(self.field, key);
        for attempt in 0..TIE_ATTEMPTS {
            // Escalate to the largest page on retries: fewer pages, fewer chances to move.
            let page_size = if attempt == 0 { self.page_size } else { MAX_PAGE_SIZE };
            let count_statement = query::count_tie_statement(self.entity, self.field, &literal);
            // Counted before the first page: an edit to any record we read later shifts the
            // offsets, and only a count taken before the first read can reveal it.
            self.stats.count_requests += 1;
            let before = self.client.count(self.entity, &count_statement).await?;
            let pages = self.read_tie_pages(&literal, 1, page_size).await?;
            if pages == 1 {
                return Ok(()); // one short page is a snapshot by itself
            }
            self.stats.count_requests += 1;
            let after = self.client.count(self.entity, &count_statement).await?;
            if after == before {
                return Ok(());
            }
            tracing::info!(target: "qbo_rs", "window {}: {before} → {after} records at {literal} changed during the read; reading them again", self.window.label);
        }
        Err(Error::Integrity(format!("window {}: the records at {literal} kept changing across {TIE_ATTEMPTS} reads; re-run the window", self.window.label)))
    }

    async fn fetch(&mut self, statement: &str) -> Result<Vec<Decoded>, Error> {
        self.sink.before_fetch().await?;
        self.stats.pages += 1;
        let page = self.client.select(self.entity, statement).await?;
        decode(&page, self.field, self.stats.pages)
    }

    /// Keeps records not seen before (or seen in an older version) and emits them.
    async fn accept(&mut self, page: Vec<Decoded>) -> Result<(), Error> {
        let mut fresh = Vec::with_capacity(page.len());
        for d in page {
            if self.seen.keep_newer(&d.record.id, d.record.version(), d.record.key_ms) {
                fresh.push(d.record);
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        self.sink.accept(fresh).await
    }
}

/// Reads `window` completely and returns every record version read, in the order read (an id
/// edited during the read can appear more than once; the newest copy comes last).
pub async fn read_window_records(client: &QboClient, entity: Entity, field: FilterField, window: &Window, page_size: u32) -> Result<Vec<FetchedRecord>, Error> {
    struct Collect(std::sync::Mutex<Vec<FetchedRecord>>);
    impl PageSink for Collect {
        async fn before_fetch(&self) -> Result<(), Error> {
            Ok(())
        }
        async fn accept(&self, records: Vec<FetchedRecord>) -> Result<(), Error> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(records);
            Ok(())
        }
    }
    let collected = Collect(std::sync::Mutex::new(Vec::new()));
    WindowReader::new(client, entity, field, window, page_size, &collected).run().await?;
    Ok(collected.0.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Reads `window` completely and returns its records as one JSON array of QBO's payloads,
/// untouched: the newest version of each id, in filter order (ties by numeric id).
pub async fn read_window_json(client: &QboClient, entity: Entity, field: FilterField, window: &Window, page_size: u32) -> Result<Vec<u8>, Error> {
    let mut records = read_window_records(client, entity, field, window, page_size).await?;
    records.sort_by(|a, b| a.id.cmp(&b.id).then(b.version().cmp(&a.version())));
    records.dedup_by(|a, b| a.id == b.id);
    records.sort_by_key(|r| (r.last_updated_utc, r.id.parse::<u64>().unwrap_or(u64::MAX)));
    let mut out = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&r.payload);
    }
    out.push(b']');
    Ok(out)
}
