//! Records per day, month or window of a RAW file (a "volumetría"): how the records spread over
//! time, by a date or time column of their batches. Read a batch at a time; only the counts are
//! kept.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};

use crate::{RawEntity, RawFileReader, ReadError, DEFAULT_BATCH_ROWS};

/// How records are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// By the UTC day of `field`.
    Day,
    /// By the UTC month of `field`.
    Month,
    /// By the extract window the record was read in (`field` is not used).
    Window,
}

impl Period {
    pub fn parse(name: &str) -> Option<Period> {
        match name.trim().to_ascii_lowercase().as_str() {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            "window" => Some(Period::Window),
            _ => None,
        }
    }
}

/// One period and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodCount {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub records: u64,
}

/// Records per period of `path`, in time order; deleted records (a `deleted_at_utc`) are left
/// out, and so are records whose `field` is null. `field` names a date or timestamp column of the
/// entity's batches (`last_updated_utc`, `txn_date` for invoices, ...).
pub fn volume(path: &Path, entity: Option<RawEntity>, field: &str, by: Period) -> Result<Vec<PeriodCount>, ReadError> {
    let reader = RawFileReader::open(path, entity, DEFAULT_BATCH_ROWS)?;
    let column = if by == Period::Window { "extract_window_start_utc" } else { field };
    let schema = reader.entity().schema();
    let date_like = schema
        .field_with_name(column)
        .ok()
        .map(|f| f.data_type().clone())
        .filter(|t| matches!(t, DataType::Date32 | DataType::Timestamp(TimeUnit::Millisecond, _)));
    if date_like.is_none() {
        let choices: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| matches!(f.data_type(), DataType::Date32 | DataType::Timestamp(..)) && f.name() != "deleted_at_utc")
            .map(|f| f.name().as_str())
            .collect();
        return Err(ReadError::Entity(format!("{field:?} is not a date or time column of a {:?} file: use one of {}", reader.entity(), choices.join(", "))));
    }
    // Period start -> (end, records).
    let mut periods: BTreeMap<DateTime<Utc>, (DateTime<Utc>, u64)> = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| match e {
            arrow_schema::ArrowError::ExternalError(inner) => match inner.downcast::<ReadError>() {
                Ok(read) => *read,
                Err(other) => ReadError::Entity(other.to_string()),
            },
            other => ReadError::Entity(other.to_string()),
        })?;
        count_batch(&batch, column, by, &mut periods);
    }
    Ok(periods.into_iter().map(|(start, (end, records))| PeriodCount { start, end, records }).collect())
}

fn count_batch(batch: &RecordBatch, column: &str, by: Period, periods: &mut BTreeMap<DateTime<Utc>, (DateTime<Utc>, u64)>) {
    let values = batch.column_by_name(column).expect("the column was checked against the schema");
    let deleted = batch.column_by_name("deleted_at_utc").expect("every batch has deleted_at_utc");
    let window_end = batch.column_by_name("extract_window_end_utc").expect("every batch has its window").as_primitive::<TimestampMillisecondType>();
    for row in 0..batch.num_rows() {
        if deleted.is_valid(row) || values.is_null(row) {
            continue;
        }
        let instant = match values.data_type() {
            DataType::Date32 => {
                let days = values.as_primitive::<Date32Type>().value(row);
                DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(i64::from(days))
            }
            _ => Utc.timestamp_millis_opt(values.as_primitive::<TimestampMillisecondType>().value(row)).single().unwrap_or_default(),
        };
        let (start, end) = match by {
            Period::Window => (instant, Utc.timestamp_millis_opt(window_end.value(row)).single().unwrap_or(instant)),
            Period::Day => {
                let day = Utc.from_utc_datetime(&instant.date_naive().and_hms_opt(0, 0, 0).expect("midnight"));
                (day, day + chrono::Duration::days(1))
            }
            Period::Month => {
                let first = NaiveDate::from_ymd_opt(instant.year(), instant.month(), 1).expect("a month's first day");
                let month = Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).expect("midnight"));
                (month, month + Months::new(1))
            }
        };
        periods.entry(start).or_insert((end, 0)).1 += 1;
    }
}
