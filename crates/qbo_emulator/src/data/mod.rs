//! Deterministic data: generation, the in-memory tables, edits, deletes and creations.

pub(crate) mod names;
pub(crate) mod plan;
pub(crate) mod render;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::clock::ChangeClock;
use crate::config::EmulatorConfig;
use crate::rng::Rng;
pub use plan::Burst;
use plan::{schedule, Slot, Span};
use render::{Ctx, ItemKind, DELETED, TAG_CUSTOMER, TAG_INVOICE, TAG_ITEM};

/// The entities the emulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Entity {
    Invoice,
    Customer,
    Item,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::Invoice, Entity::Customer, Entity::Item];

    /// Canonical QBO name (`Invoice`).
    pub fn name(self) -> &'static str {
        match self {
            Entity::Invoice => "Invoice",
            Entity::Customer => "Customer",
            Entity::Item => "Item",
        }
    }

    /// The entity of a query's `FROM` (case-insensitive, as Intuit's case-sensitivity section
    /// says).
    pub fn from_query_name(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name().eq_ignore_ascii_case(s))
    }

    /// Lenient parse for admin routes and the Rust API: `Invoice`, `invoice`, `invoices`.
    pub fn parse_loose(s: &str) -> Option<Entity> {
        let s = s.trim();
        Entity::from_query_name(s).or_else(|| Entity::from_query_name(s.strip_suffix(['s', 'S'])?))
    }

    /// Name-list entities have `Active` and are implicitly filtered to active records.
    pub fn is_list(self) -> bool {
        self != Entity::Invoice
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn tag(self) -> u64 {
        match self {
            Entity::Invoice => TAG_INVOICE,
            Entity::Customer => TAG_CUSTOMER,
            Entity::Item => TAG_ITEM,
        }
    }
}

/// Per-entity mutable fields that filters read.
#[derive(Clone, Debug)]
pub(crate) enum Ext {
    Invoice { txn: i64, due: i64, cust: u32, total: i64, balance: i64 },
    Customer { balance: i64 },
    Item { kind: ItemKind, price: i64 },
}

/// One stored record: its state and its pre-serialised compact JSON.
#[derive(Clone, Debug)]
pub(crate) struct Rec {
    pub id: u32,
    pub sync: u32,
    pub created: i64,
    pub updated: i64,
    pub active: bool,
    pub edits: u32,
    /// DisplayName (Customer), Name (Item) or DocNumber (Invoice), as served.
    pub name: Box<str>,
    pub ext: Ext,
    pub json: Bytes,
    /// When a transaction was hard-deleted (milliseconds since the epoch); a deleted record is
    /// out of every query, count, read and truth, and only CDC reports it.
    pub deleted_ms: Option<i64>,
}

impl Rec {
    pub(crate) fn is_live(&self) -> bool {
        self.deleted_ms.is_none()
    }
}

/// One entity's records, by Id (`recs[id-1]`, deleted ones kept so that an Id is never reused),
/// plus the `(LastUpdatedTime, index)` order index of the live records that range predicates
/// binary-search, and the `(deletion ms, index)` list of the deleted ones.
pub(crate) struct Table {
    pub entity: Entity,
    pub recs: Vec<Rec>,
    pub by_updated: Vec<(i64, u32)>,
    /// Ascending: deletion stamps strictly increase.
    pub deletions: Vec<(i64, u32)>,
    pub bursts: Vec<Burst>,
    pub ctx: Arc<Ctx>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
}

/// Renders a record to an exactly-sized `Bytes`.
fn render(ctx: &Ctx, rec: &Rec) -> Bytes {
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        buf.clear();
        match rec.ext {
            Ext::Invoice { balance, .. } => {
                let core = render::invoice_core(ctx, rec.id, rec.created);
                render::write_invoice(&mut buf, ctx, &core, rec, balance);
            }
            Ext::Customer { balance } => render::write_customer(&mut buf, ctx, rec, balance),
            Ext::Item { .. } => render::write_item(&mut buf, ctx, rec),
        }
        Bytes::copy_from_slice(&buf)
    })
}

fn make_rec(ctx: &Ctx, entity: Entity, id: u32, slot: &Slot, active: bool) -> Rec {
    let (name, ext) = match entity {
        Entity::Invoice => {
            let core = render::invoice_core(ctx, id, slot.created);
            (
                (1000 + id as u64).to_string(),
                Ext::Invoice { txn: core.txn_days, due: core.due_days, cust: core.customer_id, total: core.total, balance: core.initial_balance },
            )
        }
        Entity::Customer => {
            let p = &ctx.customers[id as usize - 1];
            let n = if active { p.display.clone() } else { format!("{}{DELETED}", p.display) };
            (n, Ext::Customer { balance: p.balance })
        }
        Entity::Item => {
            let p = &ctx.items[id as usize - 1];
            let n = if active { p.name.clone() } else { format!("{}{DELETED}", p.name) };
            (n, Ext::Item { kind: p.kind, price: p.price })
        }
    };
    let mut rec = Rec {
        id,
        sync: if active { slot.sync } else { slot.sync.max(1) },
        created: slot.created,
        updated: slot.updated,
        active,
        edits: 0,
        name: name.into(),
        ext,
        json: Bytes::new(),
        deleted_ms: None,
    };
    rec.json = render(ctx, &rec);
    rec
}

impl Table {
    fn build(ctx: Arc<Ctx>, entity: Entity, slots: &[Slot], inactive: &[bool], bursts: Vec<Burst>) -> Table {
        let n = slots.len();
        let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).clamp(1, 8);
        let recs: Vec<Rec> = if n < 20_000 || threads == 1 {
            (0..n).map(|i| make_rec(&ctx, entity, i as u32 + 1, &slots[i], !inactive[i])).collect()
        } else {
            let chunk = n.div_ceil(threads);
            std::thread::scope(|sc| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let ctx = &ctx;
                        sc.spawn(move || {
                            let lo = (t * chunk).min(n);
                            let hi = ((t + 1) * chunk).min(n);
                            (lo..hi).map(|i| make_rec(ctx, entity, i as u32 + 1, &slots[i], !inactive[i])).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().expect("render thread")).collect()
            })
        };
        let mut by_updated: Vec<(i64, u32)> = recs.iter().enumerate().map(|(i, r)| (r.updated, i as u32)).collect();
        by_updated.sort_unstable();
        Table { entity, recs, by_updated, deletions: Vec::new(), bursts, ctx }
    }

    /// Position of record `idx` in `by_updated`.
    pub(crate) fn position(&self, idx: usize) -> usize {
        let key = (self.recs[idx].updated, idx as u32);
        self.by_updated.binary_search(&key).unwrap_or_else(|p| p)
    }

    /// Index of the live record with this Id string, if any (a deleted transaction has none).
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.slot_of(id).filter(|&i| self.recs[i].is_live())
    }

    /// Index of the record ever created with this Id string, live or deleted.
    pub(crate) fn slot_of(&self, id: &str) -> Option<usize> {
        let n: usize = id.trim().parse().ok()?;
        (n >= 1 && n <= self.recs.len()).then(|| n - 1)
    }

    /// The records that exist now (inactive name-list records included), by Id.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Rec> {
        self.recs.iter().filter(|r| r.is_live())
    }

    fn index_key(&mut self, idx: usize) {
        let key = (self.recs[idx].updated, idx as u32);
        let p = self.by_updated.partition_point(|k| *k < key);
        self.by_updated.insert(p, key);
    }

    /// A new version of live record `idx`: out of the order index, SyncToken + 1, the new
    /// LastUpdatedTime, `change`, re-rendered, back into the index.
    fn new_version(&mut self, idx: usize, updated: i64, change: impl FnOnce(&mut Rec, &Ctx)) {
        let pos = self.position(idx);
        self.by_updated.remove(pos);
        let rec = &mut self.recs[idx];
        rec.sync += 1;
        rec.updated = updated;
        change(rec, &self.ctx);
        rec.json = render(&self.ctx, rec);
        self.index_key(idx);
    }

    /// An edit as QBO would record it: SyncToken + 1, LastUpdatedTime = now (never backwards),
    /// and a changed field (Invoice: Balance halves and PrivateNote is set; Customer: Balance and
    /// Notes; Item: UnitPrice +5 % and Description). False when the record was deleted meanwhile
    /// (a caller found it under a read lock).
    pub(crate) fn edit(&mut self, idx: usize, clock: &mut ChangeClock, now_ms: i64) -> bool {
        if !self.recs[idx].is_live() {
            return false;
        }
        let updated = clock.version_s(now_ms, self.recs[idx].updated);
        self.new_version(idx, updated, |rec, ctx| {
            rec.edits += 1;
            match &mut rec.ext {
                Ext::Invoice { balance, .. } => {
                    *balance = if *balance < 200 { 0 } else { *balance / 2 };
                }
                Ext::Customer { balance } => {
                    *balance = if *balance > 0 { *balance / 2 } else { 10_000 + (rec.id as i64 * 37) % 50_000 };
                }
                Ext::Item { price, .. } => {
                    *price = render::item_price(&ctx.items[idx], rec.edits);
                }
            }
        });
        true
    }

    /// What QuickBooks does when a name-list record (Customer, Item) is deleted: it becomes
    /// inactive (`Active:false`, `" (deleted)"` appended to its names) in a new version. False
    /// for a transaction or a record that is already inactive.
    pub(crate) fn make_inactive(&mut self, idx: usize, clock: &mut ChangeClock, now_ms: i64) -> bool {
        let rec = &self.recs[idx];
        if !self.entity.is_list() || !rec.is_live() || !rec.active {
            return false;
        }
        let updated = clock.version_s(now_ms, rec.updated);
        self.new_version(idx, updated, |rec, _| {
            rec.active = false;
            rec.name = format!("{}{DELETED}", rec.name).into();
        });
        true
    }

    /// Hard-deletes a live transaction (Invoice): it leaves the order index and joins the
    /// deletions. Returns the deletion time in milliseconds; None for a name-list record or one
    /// already deleted.
    pub(crate) fn delete(&mut self, idx: usize, clock: &mut ChangeClock, now_ms: i64) -> Option<i64> {
        if self.entity.is_list() || !self.recs[idx].is_live() {
            return None;
        }
        let at = clock.deletion_ms(now_ms, self.recs[idx].updated);
        let pos = self.position(idx);
        self.by_updated.remove(pos);
        let rec = &mut self.recs[idx];
        rec.deleted_ms = Some(at);
        rec.json = Bytes::new();
        self.deletions.push((at, idx as u32));
        Some(at)
    }

    /// A new record under the next unused Id, rendered as generated ones are, with CreateTime =
    /// LastUpdatedTime = now and SyncToken 0. Returns its index; None for an Invoice when there
    /// is no Customer or Item to refer to.
    pub(crate) fn create(&mut self, clock: &mut ChangeClock, now_ms: i64) -> Option<usize> {
        if self.entity == Entity::Invoice && (self.ctx.customers.is_empty() || self.ctx.items.is_empty()) {
            return None;
        }
        let idx = self.recs.len();
        let now_s = clock.version_s(now_ms, 0);
        // The profiles of new name-list records join this table's copy of the context only;
        // invoices keep referring to the generated ones.
        match self.entity {
            Entity::Customer => Arc::make_mut(&mut self.ctx).add_customer(now_s),
            Entity::Item => Arc::make_mut(&mut self.ctx).add_item(now_s),
            Entity::Invoice => {}
        }
        let slot = Slot { created: now_s, updated: now_s, sync: 0 };
        self.recs.push(make_rec(&self.ctx, self.entity, idx as u32 + 1, &slot, true));
        self.index_key(idx);
        Some(idx)
    }

    /// Brings a deleted record back under its old Id as a new record (CreateTime = LastUpdatedTime
    /// = now, in a later second than its deletion, SyncToken 0). False when it is not deleted.
    pub(crate) fn recreate(&mut self, idx: usize, clock: &mut ChangeClock, now_ms: i64) -> bool {
        let Some(deleted_ms) = self.recs[idx].deleted_ms else {
            return false;
        };
        let now_s = clock.version_s(now_ms, deleted_ms.div_euclid(1000) + 1);
        let slot = Slot { created: now_s, updated: now_s, sync: 0 };
        self.recs[idx] = make_rec(&self.ctx, self.entity, idx as u32 + 1, &slot, true);
        self.deletions.retain(|&(_, i)| i as usize != idx);
        self.index_key(idx);
        true
    }

    /// The largest number of records sharing one LastUpdatedTime second.
    pub(crate) fn largest_same_second(&self) -> usize {
        let mut best = 0;
        let mut i = 0;
        while i < self.by_updated.len() {
            let t = self.by_updated[i].0;
            let j = i + self.by_updated[i..].partition_point(|k| k.0 == t);
            best = best.max(j - i);
            i = j;
        }
        best
    }
}

/// All generated data.
pub(crate) struct Dataset {
    pub tables: Vec<Table>,
    pub span: Span,
}

fn pick_inactive(seed: u64, tag: u64, n: usize) -> Vec<bool> {
    let mut v = vec![false; n];
    let k = (n as f64 * 0.1).round() as usize;
    let mut rng = Rng::derive(seed, tag, 0x1AC7);
    let mut chosen = 0;
    while chosen < k {
        let i = rng.below(n as u64) as usize;
        if !v[i] {
            v[i] = true;
            chosen += 1;
        }
    }
    v
}

/// Generates every table from the config. Deterministic for `(seed, counts, data_start,
/// data_end)`.
pub(crate) fn generate(cfg: &EmulatorConfig) -> Dataset {
    let span = Span::new(cfg.seed, cfg.data_start, cfg.data_end);
    let (cs, cb) = schedule(cfg.seed, TAG_CUSTOMER, cfg.customers, &span);
    let (is, ib) = schedule(cfg.seed, TAG_ITEM, cfg.items, &span);
    let ctx = Arc::new(Ctx {
        seed: cfg.seed,
        customers: render::customer_profiles(cfg.seed, cfg.customers),
        cust_created: cs.iter().map(|s| s.created).collect(),
        items: render::item_profiles(cfg.seed, cfg.items),
        item_created: is.iter().map(|s| s.created).collect(),
    });
    let (vs, vb) = schedule(cfg.seed, TAG_INVOICE, cfg.invoices, &span);
    let inv = Table::build(ctx.clone(), Entity::Invoice, &vs, &vec![false; vs.len()], vb);
    let cus = Table::build(ctx.clone(), Entity::Customer, &cs, &pick_inactive(cfg.seed, Entity::Customer.tag(), cs.len()), cb);
    let itm = Table::build(ctx, Entity::Item, &is, &pick_inactive(cfg.seed, Entity::Item.tag(), is.len()), ib);
    Dataset { tables: vec![inv, cus, itm], span }
}

/// The empty calendar months (first days) for a seed and span, without generating anything.
/// Every entity has zero records whose CreateTime, LastUpdatedTime or (Invoice) TxnDate falls in
/// these months, whether months are taken in UTC or in Pacific time.
pub fn empty_months(seed: u64, data_start: NaiveDate, data_end: NaiveDate) -> Vec<NaiveDate> {
    Span::new(seed, data_start, data_end).empty_months
}

/// Facts about the generated data that tests can rely on (see the crate docs).
#[derive(Clone, Debug, Serialize)]
pub struct DataSummary {
    /// Start of the generated span (data_start 00:00 UTC).
    pub span_start_utc: DateTime<Utc>,
    /// End (exclusive) of the span (data_end + 1 day, 00:00 UTC).
    pub span_end_utc: DateTime<Utc>,
    /// First days of the calendar months with no record of any entity.
    pub empty_months: Vec<NaiveDate>,
    /// One entry per entity, Invoice, Customer, Item.
    pub entities: Vec<EntitySummary>,
}

/// Per-entity facts.
#[derive(Clone, Debug, Serialize)]
pub struct EntitySummary {
    pub entity: Entity,
    pub records: usize,
    pub inactive: usize,
    /// The planned dense bursts (shared LastUpdatedTime seconds), ascending by time.
    pub bursts: Vec<Burst>,
    /// The most records sharing one LastUpdatedTime second (at generation).
    pub largest_same_second: usize,
    pub min_updated_utc: Option<DateTime<Utc>>,
    pub max_updated_utc: Option<DateTime<Utc>>,
}

pub(crate) fn summarize(ds: &Dataset) -> DataSummary {
    let ts = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
    DataSummary {
        span_start_utc: ts(ds.span.start_s),
        span_end_utc: ts(ds.span.end_s),
        empty_months: ds.span.empty_months.clone(),
        entities: ds
            .tables
            .iter()
            .map(|t| EntitySummary {
                entity: t.entity,
                records: t.recs.len(),
                inactive: t.recs.iter().filter(|r| !r.active).count(),
                bursts: t.bursts.clone(),
                largest_same_second: t.largest_same_second(),
                min_updated_utc: t.by_updated.first().map(|k| ts(k.0)),
                max_updated_utc: t.by_updated.last().map(|k| ts(k.0)),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    fn cfg(invoices: usize) -> EmulatorConfig {
        EmulatorConfig { invoices, ..EmulatorConfig::default() }
    }

    fn avg(t: &Table) -> f64 {
        t.recs.iter().map(|r| r.json.len()).sum::<usize>() as f64 / t.recs.len() as f64
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(&cfg(500));
        let b = generate(&cfg(500));
        for (ta, tb) in a.tables.iter().zip(&b.tables) {
            assert_eq!(ta.recs.len(), tb.recs.len());
            for (ra, rb) in ta.recs.iter().zip(&tb.recs) {
                assert_eq!(ra.json, rb.json);
            }
        }
        let c = generate(&EmulatorConfig { seed: 43, ..cfg(500) });
        assert_ne!(a.tables[0].recs[0].json, c.tables[0].recs[0].json);
    }

    #[test]
    fn records_are_valid_json_of_realistic_size() {
        let d = generate(&cfg(2000));
        let (inv, cus, itm) = (&d.tables[0], &d.tables[1], &d.tables[2]);
        for t in &d.tables {
            let mut v: Vec<usize> = t.recs.iter().map(|r| r.json.len()).collect();
            v.sort_unstable();
            eprintln!("{:?}: avg {:.0} min {} p10 {} p90 {} max {}", t.entity, avg(t), v[0], v[v.len() / 10], v[v.len() * 9 / 10], v[v.len() - 1]);
        }
        for t in &d.tables {
            for r in &t.recs {
                let v: serde_json::Value = serde_json::from_slice(&r.json).expect("valid JSON");
                assert_eq!(v["Id"], r.id.to_string());
                assert_eq!(v["SyncToken"], r.sync.to_string());
                let ct = v["MetaData"]["CreateTime"].as_str().unwrap();
                let lu = v["MetaData"]["LastUpdatedTime"].as_str().unwrap();
                let ct = DateTime::parse_from_rfc3339(ct).unwrap();
                let lu = DateTime::parse_from_rfc3339(lu).unwrap();
                assert!(ct <= lu);
                assert!(r.sync <= 3);
            }
        }
        assert!((1500.0..=2500.0).contains(&avg(inv)), "invoice avg {}", avg(inv));
        assert!((650.0..=1000.0).contains(&avg(cus)), "customer avg {}", avg(cus));
        assert!((450.0..=800.0).contains(&avg(itm)), "item avg {}", avg(itm));
        for r in &inv.recs {
            assert!((1100..=3200).contains(&r.json.len()), "invoice size {}", r.json.len());
            let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
            let cid: usize = v["CustomerRef"]["value"].as_str().unwrap().parse().unwrap();
            assert!(cid >= 1 && cid <= cus.recs.len());
            let lines = v["Line"].as_array().unwrap();
            assert!((3..=6).contains(&lines.len()));
            assert_eq!(lines.last().unwrap()["DetailType"], "SubTotalLineDetail");
        }
    }

    #[test]
    fn inactive_share_and_deleted_suffix() {
        let d = generate(&cfg(100));
        for t in &d.tables[1..] {
            let inactive: Vec<_> = t.recs.iter().filter(|r| !r.active).collect();
            let share = inactive.len() as f64 / t.recs.len() as f64;
            assert!((0.08..=0.12).contains(&share), "share {share}");
            for r in inactive {
                assert!(r.name.ends_with(" (deleted)"));
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                assert_eq!(v["Active"], false);
            }
        }
    }

    #[test]
    fn created_list_records_get_the_profile_generation_would_give_their_id() {
        let c = EmulatorConfig { customers: 30, items: 12, ..cfg(50) };
        let mut d = generate(&c);
        let mut clock = ChangeClock::default();
        let now_ms = 1_800_000_000_000;
        let cus = d.tables[1].create(&mut clock, now_ms).unwrap();
        let itm = d.tables[2].create(&mut clock, now_ms).unwrap();
        assert_eq!((cus, itm), (30, 12));
        assert_eq!(*d.tables[1].recs[cus].name, render::customer_profiles(c.seed, 31)[30].display);
        assert_eq!(*d.tables[2].recs[itm].name, render::item_profiles(c.seed, 13)[12].name);
        assert_eq!(d.tables[0].ctx.customers.len(), 30, "invoices keep the generated customers");
        for t in &d.tables[1..] {
            assert_eq!(t.by_updated.len(), t.recs.len());
            assert_eq!(t.by_updated.last(), Some(&(1_800_000_000, t.recs.len() as u32 - 1)));
        }
    }

    #[test]
    fn a_deleted_invoice_leaves_the_order_index_and_its_id_stays_taken() {
        let mut d = generate(&cfg(40));
        let mut clock = ChangeClock::default();
        let inv = &mut d.tables[0];
        let at = inv.delete(9, &mut clock, 1_800_000_000_000).unwrap();
        assert!(inv.delete(9, &mut clock, 1_800_000_000_000).is_none(), "deleted once");
        assert!(!inv.edit(9, &mut clock, 1_800_000_000_000), "a deleted record is not edited");
        assert_eq!((inv.by_updated.len(), inv.live().count(), inv.index_of("10"), inv.slot_of("10")), (39, 39, None, Some(9)));
        assert_eq!(inv.deletions, vec![(at, 9)]);
        assert_eq!(inv.create(&mut clock, 1_800_000_000_000), Some(40), "the next Id, not the freed one");
        assert!(inv.recreate(9, &mut clock, 1_800_000_000_000));
        assert!(inv.recs[9].updated > at / 1000 && inv.deletions.is_empty() && inv.by_updated.len() == 41);
        assert!(!inv.make_inactive(3, &mut clock, 1_800_000_000_000), "an invoice is never made inactive");
    }

    #[test]
    fn pacific_offsets_in_january_and_july() {
        let d = generate(&cfg(3000));
        let (mut jan, mut jul) = (0, 0);
        for r in &d.tables[0].recs {
            let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
            let lu = v["MetaData"]["LastUpdatedTime"].as_str().unwrap().to_string();
            if &lu[5..7] == "01" {
                assert!(lu.ends_with("-08:00"), "{lu}");
                jan += 1;
            }
            if &lu[5..7] == "07" {
                assert!(lu.ends_with("-07:00"), "{lu}");
                jul += 1;
            }
            assert_eq!(lu.len(), 25, "whole seconds: {lu}");
        }
        assert!(jan > 0 && jul > 0);
    }

    #[test]
    fn empty_months_are_empty_for_every_entity() {
        let c = cfg(5000);
        let d = generate(&c);
        let empty = empty_months(c.seed, c.data_start, c.data_end);
        assert!(empty.len() >= 2, "{empty:?}");
        assert_eq!(empty, d.span.empty_months);
        let in_empty = |s: i64| {
            let utc = DateTime::from_timestamp(s, 0).unwrap();
            let pac = crate::pacific::days_to_date(crate::pacific::pacific_days(s));
            empty.iter().any(|m| (utc.year(), utc.month()) == (m.year(), m.month()) || (pac.year(), pac.month()) == (m.year(), m.month()))
        };
        for t in &d.tables {
            assert!(!t.recs.is_empty());
            for r in &t.recs {
                assert!(!in_empty(r.updated) && !in_empty(r.created), "{:?} {}", t.entity, r.id);
            }
        }
    }

    #[test]
    fn bursts_exceed_a_page_for_100k_invoices() {
        let span = Span::new(42, EmulatorConfig::default().data_start, EmulatorConfig::default().data_end);
        let (slots, bursts) = schedule(42, TAG_INVOICE, 100_000, &span);
        assert_eq!(slots.len(), 100_000);
        let mut by_sec = std::collections::HashMap::<i64, usize>::new();
        for s in &slots {
            *by_sec.entry(s.updated).or_default() += 1;
        }
        assert!(by_sec.values().any(|&c| c > 1000));
        assert!(bursts.len() >= 5);
        assert!(bursts.iter().filter(|b| (50..=600).contains(&b.size)).count() >= 3);
        // Within the span, and CreateTime never after LastUpdatedTime.
        assert!(slots.iter().all(|s| s.created <= s.updated && s.created >= span.start_s && s.updated < span.end_s));
    }
}
