//! Python values in, core types out: dates as `str`, `datetime.date` or `datetime.datetime`
//! (naive means UTC), entities and filter fields as strings.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyDate, PyDateTime, PyString};

use crate::errors::{config_error, to_py};

pub fn instant(py: Python<'_>, what: &str, value: &Bound<'_, PyAny>) -> PyResult<DateTime<Utc>> {
    if let Ok(s) = value.cast::<PyString>() {
        return qbo_core::time::parse_user_instant(what, &s.to_cow()?).map_err(|e| to_py(py, e));
    }
    if value.is_instance_of::<PyDateTime>() {
        if let Ok(aware) = value.extract::<DateTime<FixedOffset>>() {
            return Ok(aware.with_timezone(&Utc));
        }
        let naive: NaiveDateTime = value.extract()?;
        return Ok(Utc.from_utc_datetime(&naive));
    }
    if value.is_instance_of::<PyDate>() {
        let d: NaiveDate = value.extract()?;
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    Err(config_error(
        py,
        format!("{what} must be an ISO date string, a date or a datetime, not {}", value.get_type().name()?),
    ))
}

pub fn entity(py: Python<'_>, value: &str) -> PyResult<qbo_core::Entity> {
    value.parse().map_err(|e| to_py(py, e))
}

pub fn filter_field(py: Python<'_>, value: &str) -> PyResult<qbo_core::FilterField> {
    value.parse().map_err(|e| to_py(py, e))
}

/// Python ints arrive as i64 so that negative values get our message, not an OverflowError.
pub fn positive_u32(py: Python<'_>, what: &str, value: i64) -> PyResult<u32> {
    u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| config_error(py, format!("{what} must be a positive integer, got {value}")))
}
