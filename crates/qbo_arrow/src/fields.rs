//! The columns of a RAW batch: the lineage every line carries, then the typed fields of the
//! entity's payload, then the payload itself.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Amounts: 38 digits with 6 after the point hold every amount QuickBooks sends, exactly.
const DECIMAL_PRECISION: u8 = 38;
const DECIMAL_SCALE: i8 = 6;

/// The entities qbo_rs writes, as their RAW files name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEntity {
    Invoice,
    Customer,
    Item,
}

impl From<qbo_core::Entity> for RawEntity {
    fn from(entity: qbo_core::Entity) -> Self {
        match entity {
            qbo_core::Entity::Invoice => RawEntity::Invoice,
            qbo_core::Entity::Customer => RawEntity::Customer,
            qbo_core::Entity::Item => RawEntity::Item,
        }
    }
}

impl From<RawEntity> for qbo_core::Entity {
    fn from(entity: RawEntity) -> Self {
        match entity {
            RawEntity::Invoice => qbo_core::Entity::Invoice,
            RawEntity::Customer => qbo_core::Entity::Customer,
            RawEntity::Item => qbo_core::Entity::Item,
        }
    }
}

/// The type of a typed field.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Date,
    Amount,
    Flag,
}

impl RawEntity {
    /// `invoice`, `Invoice`, `invoices` (a file's stem) and the like: the core's entity names.
    pub fn parse(name: &str) -> Option<RawEntity> {
        name.parse::<qbo_core::Entity>().ok().map(RawEntity::from)
    }

    /// `invoice`, `customer` or `item`.
    pub fn slug(self) -> &'static str {
        qbo_core::Entity::from(self).slug()
    }

    /// The typed columns taken from the payload, by name: a handful analysts reach for first.
    /// Invoice: `txn_date`, `doc_number`, `total_amt`, `balance`, `customer_ref` (the
    /// customer's id) and `customer_name`; Customer: `display_name`, `active`, `balance`; Item:
    /// `name`, `type`, `active`, `unit_price`.
    pub fn typed_fields(self) -> Vec<&'static str> {
        self.typed().iter().map(|(name, _)| *name).collect()
    }

    fn typed(self) -> &'static [(&'static str, Kind)] {
        match self {
            RawEntity::Invoice => &[
                ("txn_date", Kind::Date),
                ("doc_number", Kind::Text),
                ("total_amt", Kind::Amount),
                ("balance", Kind::Amount),
                ("customer_ref", Kind::Text),
                ("customer_name", Kind::Text),
            ],
            RawEntity::Customer => &[("display_name", Kind::Text), ("active", Kind::Flag), ("balance", Kind::Amount)],
            RawEntity::Item => &[("name", Kind::Text), ("type", Kind::Text), ("active", Kind::Flag), ("unit_price", Kind::Amount)],
        }
    }

    /// The schema of this entity's batches.
    pub fn schema(self) -> SchemaRef {
        let utc = |name: &str, nullable: bool| Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), nullable);
        let mut fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("realm_id", DataType::Utf8, false),
            Field::new("entity", DataType::Utf8, false),
            utc("last_updated_utc", false),
            Field::new("sync_token", DataType::Int64, false),
            utc("ingested_at_utc", false),
            utc("extract_window_start_utc", false),
            utc("extract_window_end_utc", false),
            Field::new("page_number", DataType::Int32, false),
            Field::new("page_size", DataType::Int32, false),
            utc("deleted_at_utc", true),
        ];
        for (name, kind) in self.typed() {
            let ty = match kind {
                Kind::Text => DataType::Utf8,
                Kind::Date => DataType::Date32,
                Kind::Amount => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
                Kind::Flag => DataType::Boolean,
            };
            fields.push(Field::new(*name, ty, true));
        }
        fields.push(Field::new("payload", DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    }
}

/// A RAW line's fields.
#[derive(Deserialize)]
pub(crate) struct RawLine<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    realm_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) entity: Cow<'a, str>,
    #[serde(borrow)]
    last_updated_utc: Cow<'a, str>,
    #[serde(borrow)]
    sync_token: Cow<'a, str>,
    #[serde(borrow)]
    ingested_at_utc: Cow<'a, str>,
    #[serde(borrow)]
    extract_window_start_utc: Cow<'a, str>,
    #[serde(borrow)]
    extract_window_end_utc: Cow<'a, str>,
    page_number: i32,
    page_size: i32,
    #[serde(default, borrow)]
    deleted_at_utc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// One record's columns, typed: from a RAW line, or from a record the engine fetched.
pub(crate) struct LineValues<'a> {
    pub id: &'a str,
    pub realm_id: &'a str,
    pub entity: &'a str,
    pub last_updated_ms: i64,
    pub sync_token: i64,
    pub ingested_ms: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub page_number: i32,
    pub page_size: i32,
    pub deleted_ms: Option<i64>,
    pub payload: &'a RawValue,
}

/// The payload fields the typed columns come from (every other field is skipped).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct PayloadFields<'a> {
    #[serde(default, borrow)]
    txn_date: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    doc_number: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    total_amt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    balance: Option<&'a RawValue>,
    #[serde(default, borrow)]
    customer_ref: Option<Reference<'a>>,
    #[serde(default, borrow)]
    display_name: Option<Cow<'a, str>>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "Type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    unit_price: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Reference<'a> {
    #[serde(default, borrow)]
    value: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

enum Typed {
    Text(StringBuilder),
    Date(Date32Builder),
    Amount(Decimal128Builder),
    Flag(BooleanBuilder),
}

/// The builders of one batch.
pub(crate) struct Columns {
    entity: RawEntity,
    schema: SchemaRef,
    id: StringBuilder,
    realm_id: StringBuilder,
    entity_name: StringBuilder,
    last_updated: TimestampMillisecondBuilder,
    sync_token: Int64Builder,
    ingested: TimestampMillisecondBuilder,
    window_start: TimestampMillisecondBuilder,
    window_end: TimestampMillisecondBuilder,
    page_number: Int32Builder,
    page_size: Int32Builder,
    deleted: TimestampMillisecondBuilder,
    typed: Vec<Typed>,
    payload: StringBuilder,
    rows: usize,
}

fn utc_builder() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone("UTC")
}

fn millis(what: &str, text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|e| format!("{what} {text:?} is not an RFC 3339 time ({e})"))
}

/// A JSON number's text as a decimal at [`DECIMAL_SCALE`], exactly (None when it is not a plain
/// decimal number or has more digits after the point than the scale keeps).
fn decimal(number: &str) -> Option<i128> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = DECIMAL_SCALE as usize;
    let kept = fraction.trim_end_matches('0');
    if kept.len() > scale {
        return None;
    }
    let text = format!("{whole}{kept:0<scale$}");
    let value: i128 = text.parse().ok()?;
    Some(if negative { -value } else { value })
}

impl Columns {
    pub(crate) fn new(entity: RawEntity, schema: SchemaRef) -> Self {
        let typed = entity
            .typed()
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Text => Typed::Text(StringBuilder::new()),
                Kind::Date => Typed::Date(Date32Builder::new()),
                Kind::Amount => Typed::Amount(Decimal128Builder::new().with_data_type(DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE))),
                Kind::Flag => Typed::Flag(BooleanBuilder::new()),
            })
            .collect();
        Columns {
            entity,
            schema,
            id: StringBuilder::new(),
            realm_id: StringBuilder::new(),
            entity_name: StringBuilder::new(),
            last_updated: utc_builder(),
            sync_token: Int64Builder::new(),
            ingested: utc_builder(),
            window_start: utc_builder(),
            window_end: utc_builder(),
            page_number: Int32Builder::new(),
            page_size: Int32Builder::new(),
            deleted: utc_builder(),
            typed,
            payload: StringBuilder::new(),
            rows: 0,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one line's values (nothing is appended when it fails).
    pub(crate) fn push(&mut self, line: &RawLine<'_>) -> Result<(), String> {
        let values = LineValues {
            id: &line.id,
            realm_id: &line.realm_id,
            entity: &line.entity,
            last_updated_ms: millis("last_updated_utc", &line.last_updated_utc)?,
            sync_token: line.sync_token.parse().map_err(|_| format!("sync_token {:?} is not a number", line.sync_token))?,
            ingested_ms: millis("ingested_at_utc", &line.ingested_at_utc)?,
            window_start_ms: millis("extract_window_start_utc", &line.extract_window_start_utc)?,
            window_end_ms: millis("extract_window_end_utc", &line.extract_window_end_utc)?,
            page_number: line.page_number,
            page_size: line.page_size,
            deleted_ms: line.deleted_at_utc.as_deref().map(|t| millis("deleted_at_utc", t)).transpose()?,
            payload: line.payload,
        };
        self.push_values(&values)
    }

    /// Appends one record's values (nothing is appended when its payload is not an object).
    pub(crate) fn push_values(&mut self, line: &LineValues<'_>) -> Result<(), String> {
        let fields: PayloadFields<'_> = serde_json::from_str(line.payload.get()).map_err(|e| format!("payload: {e}"))?;
        self.id.append_value(line.id);
        self.realm_id.append_value(line.realm_id);
        self.entity_name.append_value(line.entity);
        self.last_updated.append_value(line.last_updated_ms);
        self.sync_token.append_value(line.sync_token);
        self.ingested.append_value(line.ingested_ms);
        self.window_start.append_value(line.window_start_ms);
        self.window_end.append_value(line.window_end_ms);
        self.page_number.append_value(line.page_number);
        self.page_size.append_value(line.page_size);
        self.deleted.append_option(line.deleted_ms);
        let reference = fields.customer_ref.as_ref();
        for ((name, _), column) in self.entity.typed().iter().zip(&mut self.typed) {
            let text = |v: &Option<Cow<'_, str>>| v.as_deref().map(str::to_string);
            match column {
                Typed::Text(b) => b.append_option(match *name {
                    "doc_number" => text(&fields.doc_number),
                    "customer_ref" => reference.and_then(|r| text(&r.value)),
                    "customer_name" => reference.and_then(|r| text(&r.name)),
                    "display_name" => text(&fields.display_name),
                    "name" => text(&fields.name),
                    "type" => text(&fields.kind),
                    _ => None,
                }),
                Typed::Date(b) => b.append_option(
                    fields
                        .txn_date
                        .as_deref()
                        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                        .map(|d| (d - NaiveDate::default()).num_days() as i32),
                ),
                Typed::Amount(b) => b.append_option(
                    match *name {
                        "total_amt" => fields.total_amt,
                        "balance" => fields.balance,
                        "unit_price" => fields.unit_price,
                        _ => None,
                    }
                    .and_then(|n| decimal(n.get())),
                ),
                Typed::Flag(b) => b.append_option(fields.active),
            }
        }
        self.payload.append_value(line.payload.get());
        self.rows += 1;
        Ok(())
    }

    /// The batch built so far; the builders start over.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.realm_id.finish()),
            Arc::new(self.entity_name.finish()),
            Arc::new(self.last_updated.finish()),
            Arc::new(self.sync_token.finish()),
            Arc::new(self.ingested.finish()),
            Arc::new(self.window_start.finish()),
            Arc::new(self.window_end.finish()),
            Arc::new(self.page_number.finish()),
            Arc::new(self.page_size.finish()),
            Arc::new(self.deleted.finish()),
        ];
        for column in &mut self.typed {
            columns.push(match column {
                Typed::Text(b) => Arc::new(b.finish()),
                Typed::Date(b) => Arc::new(b.finish()),
                Typed::Amount(b) => Arc::new(b.finish()),
                Typed::Flag(b) => Arc::new(b.finish()),
            });
        }
        columns.push(Arc::new(self.payload.finish()));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(decimal("639.00"), Some(639_000_000));
        assert_eq!(decimal("75"), Some(75_000_000));
        assert_eq!(decimal("-0.5"), Some(-500_000));
        assert_eq!(decimal("1.123456"), Some(1_123_456));
        assert_eq!(decimal("1.1234567"), None);
        assert_eq!(decimal("1.1234560"), Some(1_123_456));
        assert_eq!(decimal("1e3"), None);
        assert_eq!(decimal(".5"), None);
    }

    #[test]
    fn entities_by_any_of_their_names() {
        assert_eq!(RawEntity::parse("invoices"), Some(RawEntity::Invoice));
        assert_eq!(RawEntity::parse("Customer"), Some(RawEntity::Customer));
        assert_eq!(RawEntity::parse("item"), Some(RawEntity::Item));
        assert_eq!(RawEntity::parse("bill"), None);
    }
}
