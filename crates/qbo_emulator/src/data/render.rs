//! Compact-JSON rendering of records, written by hand into a byte buffer (no serde on the hot
//! path: generation of a million invoices must take seconds). Content that never changes is drawn
//! from a per-record PRNG stream `(seed, entity, id)`, so re-rendering after an edit reproduces
//! it exactly and only the mutable state (SyncToken, LastUpdatedTime, Balance, notes) differs.

use std::collections::HashSet;

use super::names::*;
use super::Rec;
use crate::pacific::{pacific_days, write_date, write_pacific};
use crate::rng::Rng;

pub(crate) const TAG_INVOICE: u64 = 1;
pub(crate) const TAG_CUSTOMER: u64 = 2;
pub(crate) const TAG_ITEM: u64 = 3;

/// A tiny JSON writer.
pub(crate) struct J<'a>(pub &'a mut Vec<u8>);

impl J<'_> {
    #[inline]
    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A JSON string literal with escaping.
    pub fn s(&mut self, s: &str) -> &mut Self {
        self.0.push(b'"');
        for &c in s.as_bytes() {
            match c {
                b'"' => self.0.extend_from_slice(b"\\\""),
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                0..=0x1f => {
                    let hex = b"0123456789abcdef";
                    self.0.extend_from_slice(b"\\u00");
                    self.0.push(hex[(c >> 4) as usize]);
                    self.0.push(hex[(c & 15) as usize]);
                }
                _ => self.0.push(c),
            }
        }
        self.0.push(b'"');
        self
    }
    /// `"key":"value",`-style helpers keep the call sites short.
    pub fn kv(&mut self, k: &str, v: &str) -> &mut Self {
        self.0.push(b'"');
        self.raw(k);
        self.raw("\":");
        self.s(v)
    }
    pub fn u(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.0.extend_from_slice(&tmp[i..]);
        self
    }
    pub fn i(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.0.push(b'-');
        }
        self.u(v.unsigned_abs())
    }
    /// A quoted unsigned number (`"Id":"42"`).
    pub fn qu(&mut self, v: u64) -> &mut Self {
        self.0.push(b'"');
        self.u(v);
        self.0.push(b'"');
        self
    }
    /// Money with two decimals, as QBO prints stored amounts (`639.00`).
    pub fn money(&mut self, cents: i64) -> &mut Self {
        if cents < 0 {
            self.0.push(b'-');
        }
        let c = cents.unsigned_abs();
        self.u(c / 100);
        self.0.push(b'.');
        self.0.push(b'0' + (c % 100 / 10) as u8);
        self.0.push(b'0' + (c % 10) as u8);
        self
    }
    /// A price as QBO prints unit prices: `75` when whole, `12.5` / `12.75` otherwise.
    pub fn price(&mut self, cents: i64) -> &mut Self {
        if cents % 100 == 0 {
            self.i(cents / 100)
        } else if cents % 10 == 0 {
            self.i(cents / 100);
            self.0.push(b'.');
            self.0.push(b'0' + (cents.unsigned_abs() % 100 / 10) as u8);
            self
        } else {
            self.money(cents)
        }
    }
    pub fn date(&mut self, days: i64) -> &mut Self {
        self.0.push(b'"');
        write_date(self.0, days);
        self.0.push(b'"');
        self
    }
    pub fn pacific(&mut self, utc_s: i64) -> &mut Self {
        self.0.push(b'"');
        write_pacific(self.0, utc_s);
        self.0.push(b'"');
        self
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Addr {
    pub id: u32,
    pub line1: String,
    pub city: &'static str,
    pub state: &'static str,
    pub zip: String,
    pub lat: String,
    pub long: String,
}

impl Addr {
    fn gen(rng: &mut Rng, id: u32) -> Addr {
        let &(city, state, zip, lat, long) = rng.pick(CITIES);
        Addr {
            id,
            line1: format!("{} {}", rng.range(100, 9999), rng.pick(STREETS)),
            city,
            state,
            zip: format!("{zip}{:02}", rng.below(100)),
            lat: format!("{}{:04}", lat, rng.below(10_000)),
            long: format!("{}{:04}", long, rng.below(10_000)),
        }
    }

    /// Writes `"key":{...}`; `geo` adds the geocoded Lat/Long that customer records sometimes
    /// carry (a quarter of addresses).
    fn write(&self, j: &mut J, key: &str, geo: bool) {
        j.raw("\"").raw(key).raw("\":{\"Id\":").qu(self.id as u64);
        j.raw(",").kv("Line1", &self.line1).raw(",").kv("City", self.city);
        j.raw(",").kv("CountrySubDivisionCode", self.state).raw(",").kv("PostalCode", &self.zip);
        if geo && self.id.is_multiple_of(4) {
            j.raw(",").kv("Lat", &self.lat).raw(",").kv("Long", &self.long);
        }
        j.raw("}");
    }
}

/// The never-changing part of a customer.
#[derive(Clone, Debug)]
pub(crate) struct CustomerProfile {
    pub display: String,
    pub given: String,
    pub family: String,
    pub company: Option<String>,
    pub title: Option<&'static str>,
    pub email: String,
    pub phone: String,
    pub mobile: Option<String>,
    pub web: Option<String>,
    pub bill: Addr,
    pub ship: Option<Addr>,
    pub taxable: bool,
    pub delivery: &'static str,
    pub notes: Option<&'static str>,
    pub balance: i64,
    pub v4id: String,
}

/// The never-changing part of an item.
#[derive(Clone, Debug)]
pub(crate) struct ItemProfile {
    pub name: String,
    pub kind: ItemKind,
    pub price: i64,
    pub cost: i64,
    pub desc: String,
    pub taxable: bool,
    pub income: (&'static str, &'static str),
    pub qty: u32,
    pub sku: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ItemKind {
    Inventory,
    Service,
    NonInventory,
}

impl ItemKind {
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Inventory => "Inventory",
            ItemKind::Service => "Service",
            ItemKind::NonInventory => "NonInventory",
        }
    }
}

/// What invoices need to know about customers and items. Ids are `index + 1`, and Ids grow with
/// CreateTime, so `*_created` is sorted.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub seed: u64,
    pub customers: Vec<CustomerProfile>,
    pub cust_created: Vec<i64>,
    pub items: Vec<ItemProfile>,
    pub item_created: Vec<i64>,
}

fn phone(rng: &mut Rng) -> String {
    format!("({}) 555-{:04}", rng.pick(&["650", "408", "415", "503", "206", "520"]), rng.below(10_000))
}

pub(crate) fn customer_profiles(seed: u64, n: usize) -> Vec<CustomerProfile> {
    let mut seen = HashSet::with_capacity(n);
    (1..=n as u64).map(|id| customer_profile(seed, id, &mut seen)).collect()
}

/// The profile of customer `id`; `seen` holds the lower-case display names taken so far (a
/// repeated one gets ` (id)` appended).
fn customer_profile(seed: u64, id: u64, seen: &mut HashSet<String>) -> CustomerProfile {
    let mut r = Rng::derive(seed, TAG_CUSTOMER, id);
    let given = rng_s(&mut r, FIRST);
    let family = rng_s(&mut r, LAST);
    let company = if r.chance(0.7) { Some(format!("{} {}{}", r.pick(COMPANY_A), r.pick(COMPANY_B), r.pick(COMPANY_C))) } else { None };
    let mut display = company.clone().unwrap_or_else(|| format!("{given} {family}"));
    if !seen.insert(display.to_lowercase()) {
        display = format!("{display} ({id})");
        seen.insert(display.to_lowercase());
    }
    let slug: String = display.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect::<String>().to_lowercase();
    let bill = Addr::gen(&mut r, (id * 2) as u32);
    let ship = if r.chance(0.3) { Some(Addr::gen(&mut r, (id * 2 + 1) as u32)) } else { None };
    CustomerProfile {
        email: format!("{}@{}.example.com", given.to_lowercase(), if slug.is_empty() { "mail".into() } else { slug.clone() }),
        phone: phone(&mut r),
        mobile: if r.chance(0.3) { Some(phone(&mut r)) } else { None },
        web: if company.is_some() && r.chance(0.5) { Some(format!("http://www.{slug}.example.com")) } else { None },
        title: if r.chance(0.2) { Some(*r.pick(&["Mr.", "Ms.", "Dr.", "Mrs."])) } else { None },
        bill,
        ship,
        taxable: r.chance(0.7),
        delivery: pick_str(&mut r, DELIVERY),
        notes: if r.chance(0.35) { Some(*r.pick(NOTES)) } else { None },
        balance: if r.chance(0.6) { 0 } else { r.range(1_000, 900_000) },
        v4id: format!("00209{:016x}", r.next_u64()).chars().take(20).collect(),
        given,
        family,
        company,
        display,
    }
}

fn rng_s(r: &mut Rng, l: &[&str]) -> String {
    (*r.pick(l)).to_string()
}

pub(crate) fn item_profiles(seed: u64, n: usize) -> Vec<ItemProfile> {
    let mut seen = HashSet::with_capacity(n);
    (1..=n as u64).map(|id| item_profile(seed, id, &mut seen)).collect()
}

/// The profile of item `id`; `seen` holds the lower-case names taken so far (a repeated one gets
/// ` id` appended).
fn item_profile(seed: u64, id: u64, seen: &mut HashSet<String>) -> ItemProfile {
    let mut r = Rng::derive(seed, TAG_ITEM, id);
    let mut name = format!("{} {}", r.pick(ITEM_A), r.pick(ITEM_B));
    if !seen.insert(name.to_lowercase()) {
        name = format!("{name} {id}");
        seen.insert(name.to_lowercase());
    }
    let kind = match r.below(10) {
        0..=3 => ItemKind::Inventory,
        4..=7 => ItemKind::Service,
        _ => ItemKind::NonInventory,
    };
    let price = r.range(5, 600) * 100 + if r.chance(0.3) { r.range(1, 100) } else { 0 };
    ItemProfile {
        desc: format!("{name} - {}", r.pick(&["supplied and installed", "per unit", "billed hourly", "includes materials", "standard service"])),
        kind,
        price,
        cost: price * r.range(30, 70) / 100,
        taxable: kind != ItemKind::Service || r.chance(0.2),
        income: *r.pick(INCOME_ACCOUNTS),
        qty: r.below(500) as u32,
        sku: if r.chance(0.5) { Some(format!("SKU-{:05}", r.below(100_000))) } else { None },
        name,
    }
}

impl Ctx {
    /// Adds the profile of the next customer Id, exactly the one generation would have made for
    /// it, created at `created` (not before any other: `cust_created` stays sorted).
    pub(crate) fn add_customer(&mut self, created: i64) {
        let mut seen: HashSet<String> = self.customers.iter().map(|c| c.display.to_lowercase()).collect();
        let id = self.customers.len() as u64 + 1;
        self.customers.push(customer_profile(self.seed, id, &mut seen));
        self.cust_created.push(created);
    }

    /// Adds the profile of the next item Id, as [`Ctx::add_customer`] does for customers.
    pub(crate) fn add_item(&mut self, created: i64) {
        let mut seen: HashSet<String> = self.items.iter().map(|p| p.name.to_lowercase()).collect();
        let id = self.items.len() as u64 + 1;
        self.items.push(item_profile(self.seed, id, &mut seen));
        self.item_created.push(created);
    }
}

const DELIVERY: &[&str] = &["Print", "Email", "None"];
const PRINT_STATUS: &[&str] = &["NeedToPrint", "NotSet", "PrintComplete"];
const EMAIL_STATUS: &[&str] = &["NotSet", "EmailSent", "NeedToSend"];
fn pick_str(r: &mut Rng, list: &[&'static str]) -> &'static str {
    list[r.below(list.len() as u64) as usize]
}

/// Appended to the names of an inactive name-list record, as QuickBooks does.
pub(crate) const DELETED: &str = " (deleted)";

fn common_head(j: &mut J, rec: &Rec) {
    j.raw("\"domain\":\"QBO\",\"sparse\":false,\"Id\":").qu(rec.id as u64);
    j.raw(",\"SyncToken\":").qu(rec.sync as u64);
    j.raw(",\"MetaData\":{\"CreateTime\":").pacific(rec.created);
    j.raw(",\"LastUpdatedTime\":").pacific(rec.updated).raw("}");
}

pub(crate) fn write_customer(buf: &mut Vec<u8>, ctx: &Ctx, rec: &Rec, balance: i64) {
    let p = &ctx.customers[rec.id as usize - 1];
    let j = &mut J(buf);
    j.raw("{\"Taxable\":").raw(if p.taxable { "true" } else { "false" }).raw(",");
    p.bill.write(j, "BillAddr", true);
    if let Some(s) = &p.ship {
        j.raw(",");
        s.write(j, "ShipAddr", true);
    }
    if rec.edits > 0 {
        j.raw(",\"Notes\":\"Updated by qbo_emulator (edit ").u(rec.edits as u64).raw(")\"");
    } else if let Some(n) = p.notes {
        j.raw(",").kv("Notes", n);
    }
    j.raw(",\"Job\":false,\"BillWithParent\":false,\"Balance\":").money(balance);
    j.raw(",\"BalanceWithJobs\":").money(balance);
    j.raw(",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},");
    j.kv("PreferredDeliveryMethod", p.delivery).raw(",");
    common_head(j, rec);
    if let Some(t) = p.title {
        j.raw(",").kv("Title", t);
    }
    j.raw(",").kv("GivenName", &p.given).raw(",").kv("FamilyName", &p.family);
    let suffix = if rec.active { "" } else { DELETED };
    let dn = format!("{}{}", p.display, suffix);
    j.raw(",").kv("FullyQualifiedName", &dn);
    if let Some(c) = &p.company {
        j.raw(",").kv("CompanyName", c);
    }
    j.raw(",").kv("DisplayName", &dn).raw(",").kv("PrintOnCheckName", &p.display);
    j.raw(",\"Active\":").raw(if rec.active { "true" } else { "false" });
    j.raw(",").kv("V4IDPseudonym", &p.v4id);
    j.raw(",\"PrimaryPhone\":{").kv("FreeFormNumber", &p.phone).raw("}");
    if let Some(m) = &p.mobile {
        j.raw(",\"Mobile\":{").kv("FreeFormNumber", m).raw("}");
    }
    j.raw(",\"PrimaryEmailAddr\":{").kv("Address", &p.email).raw("}");
    if let Some(w) = &p.web {
        j.raw(",\"WebAddr\":{").kv("URI", w).raw("}");
    }
    j.raw("}");
}

/// The Item price shown after `edits` emulator edits (each raises it 5 %).
pub(crate) fn item_price(p: &ItemProfile, edits: u32) -> i64 {
    p.price * (100 + 5 * edits as i64) / 100
}

pub(crate) fn write_item(buf: &mut Vec<u8>, ctx: &Ctx, rec: &Rec) {
    let p = &ctx.items[rec.id as usize - 1];
    let j = &mut J(buf);
    let suffix = if rec.active { "" } else { DELETED };
    let name = format!("{}{}", p.name, suffix);
    j.raw("{").kv("Name", &name);
    if rec.edits > 0 {
        j.raw(",\"Description\":\"").raw(&p.desc).raw(" (rev ").u(rec.edits as u64).raw(")\"");
    } else {
        j.raw(",").kv("Description", &p.desc);
    }
    j.raw(",\"Active\":").raw(if rec.active { "true" } else { "false" });
    j.raw(",").kv("FullyQualifiedName", &name);
    j.raw(",\"Taxable\":").raw(if p.taxable { "true" } else { "false" });
    j.raw(",\"UnitPrice\":").price(item_price(p, rec.edits));
    j.raw(",").kv("Type", p.kind.name());
    j.raw(",\"IncomeAccountRef\":{").kv("value", p.income.0).raw(",").kv("name", p.income.1).raw("}");
    if p.kind != ItemKind::Service {
        j.raw(",").kv("PurchaseDesc", &p.name).raw(",\"PurchaseCost\":").price(p.cost);
        j.raw(",\"ExpenseAccountRef\":{\"value\":\"80\",\"name\":\"Cost of Goods Sold\"}");
    }
    if p.kind == ItemKind::Inventory {
        j.raw(",\"AssetAccountRef\":{\"value\":\"81\",\"name\":\"Inventory Asset\"}");
        j.raw(",\"TrackQtyOnHand\":true,\"QtyOnHand\":").u(p.qty as u64);
        j.raw(",\"InvStartDate\":").date(pacific_days(rec.created));
    } else {
        j.raw(",\"TrackQtyOnHand\":false");
    }
    if let Some(s) = &p.sku {
        j.raw(",").kv("Sku", s);
    }
    j.raw(",");
    common_head(j, rec);
    j.raw("}");
}

/// One sales line of an invoice.
struct Line {
    item: u32,
    qty: u32,
    price: i64,
    taxable: bool,
    desc_variant: u8,
}

/// The never-changing part of an invoice, re-derived from `(seed, id, created)` when needed.
pub(crate) struct InvoiceCore {
    customer: u32,
    lines: Vec<Line>,
    subtotal: i64,
    tax: i64,
    taxable_amt: i64,
    tax_rate: (u32, &'static str),
    pub total: i64,
    pub initial_balance: i64,
    pub txn_days: i64,
    pub due_days: i64,
    term: (&'static str, &'static str, i64),
    memo: Option<&'static str>,
    crew: Option<u32>,
    print: &'static str,
    email_status: &'static str,
    payment_id: u64,
    pub customer_id: u32,
}

/// Picks a 1-based id among the first `k` entities created at or before `t`, or any if none.
fn pick_before(rng: &mut Rng, created: &[i64], t: i64) -> u32 {
    let k = created.partition_point(|&c| c <= t);
    let k = if k == 0 { created.len() } else { k };
    rng.below(k.max(1) as u64) as u32 + 1
}

pub(crate) fn invoice_core(ctx: &Ctx, id: u32, created: i64) -> InvoiceCore {
    let mut r = Rng::derive(ctx.seed, TAG_INVOICE, id as u64);
    let customer = if ctx.customers.is_empty() { 0 } else { pick_before(&mut r, &ctx.cust_created, created) };
    // 2..=5 sales lines, fewer more often (mean ~3.1).
    let nlines = match r.below(20) {
        0..=6 => 2,
        7..=12 => 3,
        13..=16 => 4,
        _ => 5,
    };
    let mut lines = Vec::with_capacity(nlines);
    let mut subtotal = 0;
    let mut taxable_amt = 0;
    for _ in 0..nlines {
        let item = if ctx.items.is_empty() { 0 } else { pick_before(&mut r, &ctx.item_created, created) };
        let (price, taxable) = match ctx.items.get(item as usize - 1) {
            Some(p) => (p.price, p.taxable),
            None => (r.range(10, 500) * 100, r.chance(0.5)),
        };
        let qty = if r.chance(0.5) { 1 } else { r.range(2, 12) as u32 };
        let amount = price * qty as i64;
        subtotal += amount;
        if taxable {
            taxable_amt += amount;
        }
        lines.push(Line { item, qty, price, taxable, desc_variant: r.below(3) as u8 });
    }
    let tax_rate = *r.pick(TAX_RATES);
    let tax = (taxable_amt * tax_rate.0 as i64 + 5000) / 10_000;
    let total = subtotal + tax;
    let txn_days = pacific_days(created);
    let term = *r.pick(TERMS);
    let initial_balance = match r.below(10) {
        0..=6 => 0,
        7..=8 => total,
        _ => total / 2,
    };
    InvoiceCore {
        customer,
        customer_id: customer,
        lines,
        subtotal,
        tax,
        taxable_amt,
        tax_rate,
        total,
        initial_balance,
        txn_days,
        due_days: txn_days + term.2,
        term,
        memo: if r.chance(0.6) { Some(*r.pick(MEMOS)) } else { None },
        crew: if r.chance(0.5) { Some(r.range(100, 999) as u32) } else { None },
        print: pick_str(&mut r, PRINT_STATUS),
        email_status: pick_str(&mut r, EMAIL_STATUS),
        payment_id: 500_000 + r.below(1_000_000),
    }
}

pub(crate) fn write_invoice(buf: &mut Vec<u8>, ctx: &Ctx, core: &InvoiceCore, rec: &Rec, balance: i64) {
    let j = &mut J(buf);
    j.raw("{\"AllowIPNPayment\":false,\"AllowOnlinePayment\":false,\"AllowOnlineCreditCardPayment\":false,\"AllowOnlineACHPayment\":false,");
    common_head(j, rec);
    j.raw(",\"CustomField\":[{\"DefinitionId\":\"1\",\"Name\":\"Crew #\",\"Type\":\"StringType\"");
    if let Some(c) = core.crew {
        j.raw(",\"StringValue\":\"").u(c as u64).raw("\"");
    }
    j.raw("}],\"DocNumber\":").qu(1000 + rec.id as u64);
    j.raw(",\"TxnDate\":").date(core.txn_days);
    j.raw(",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"LinkedTxn\":[");
    if balance < core.total {
        j.raw("{\"TxnId\":").qu(core.payment_id).raw(",\"TxnType\":\"Payment\"}");
    }
    j.raw("],\"Line\":[");
    for (i, l) in core.lines.iter().enumerate() {
        let item = ctx.items.get(l.item as usize - 1);
        let (iname, income) = match item {
            Some(p) => (p.name.as_str(), p.income),
            None => ("Services", ("1", "Services")),
        };
        j.raw("{\"Id\":").qu(i as u64 + 1).raw(",\"LineNum\":").u(i as u64 + 1);
        match (l.desc_variant, item) {
            (0, Some(p)) => j.raw(",").kv("Description", &p.desc),
            (1, _) => j.raw(",\"Description\":\"").raw(iname).raw(" (").u(l.qty as u64).raw(" units)\""),
            _ => j.raw(",").kv("Description", iname),
        };
        j.raw(",\"Amount\":").money(l.price * l.qty as i64);
        j.raw(",\"DetailType\":\"SalesItemLineDetail\",\"SalesItemLineDetail\":{\"ItemRef\":{\"value\":").qu(l.item as u64).raw(",").kv("name", iname);
        j.raw("},\"UnitPrice\":").price(l.price).raw(",\"Qty\":").u(l.qty as u64);
        if l.desc_variant == 2 && l.qty > 5 {
            j.raw(",\"ItemAccountRef\":{").kv("value", income.0).raw(",").kv("name", income.1).raw("}");
        }
        j.raw(",\"TaxCodeRef\":{\"value\":\"").raw(if l.taxable { "TAX" } else { "NON" }).raw("\"}}},");
    }
    j.raw("{\"Amount\":").money(core.subtotal).raw(",\"DetailType\":\"SubTotalLineDetail\",\"SubTotalLineDetail\":{}}]");
    j.raw(",\"TxnTaxDetail\":{\"TxnTaxCodeRef\":{\"value\":\"2\"},\"TotalTax\":").money(core.tax);
    if core.taxable_amt > 0 {
        j.raw(",\"TaxLine\":[{\"Amount\":").money(core.tax);
        j.raw(",\"DetailType\":\"TaxLineDetail\",\"TaxLineDetail\":{\"TaxRateRef\":{\"value\":\"").raw(core.tax_rate.1);
        j.raw("\"},\"PercentBased\":true,\"TaxPercent\":").price(core.tax_rate.0 as i64);
        j.raw(",\"NetAmountTaxable\":").money(core.taxable_amt).raw("}}]");
    }
    j.raw("}");
    let cust = ctx.customers.get((core.customer as usize).wrapping_sub(1));
    j.raw(",\"CustomerRef\":{\"value\":").qu(core.customer as u64);
    if let Some(c) = cust {
        j.raw(",").kv("name", &c.display);
    }
    j.raw("}");
    if let Some(m) = core.memo {
        j.raw(",\"CustomerMemo\":{").kv("value", m).raw("}");
    }
    if let Some(c) = cust {
        j.raw(",");
        c.bill.write(j, "BillAddr", false);
        if let Some(ship) = &c.ship {
            j.raw(",");
            ship.write(j, "ShipAddr", false);
        }
    }
    j.raw(",\"SalesTermRef\":{").kv("value", core.term.0).raw(",").kv("name", core.term.1).raw("}");
    j.raw(",\"DueDate\":").date(core.due_days);
    j.raw(",\"TotalAmt\":").money(core.total);
    j.raw(",\"ApplyTaxAfterDiscount\":false,").kv("PrintStatus", core.print).raw(",").kv("EmailStatus", core.email_status);
    if let Some(c) = cust {
        j.raw(",\"BillEmail\":{").kv("Address", &c.email).raw("}");
    }
    j.raw(",\"Balance\":").money(balance);
    if rec.edits > 0 {
        j.raw(",\"PrivateNote\":\"Updated by qbo_emulator (edit ").u(rec.edits as u64).raw(")\"");
    }
    j.raw("}");
}
