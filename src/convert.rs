//! Python values in, core types out: dates as `str`, `datetime.date` or `datetime.datetime`
//! (naive means UTC), entities and filter fields as strings.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDate, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use qbo_core::options::{OptionSet, OptionValue};
use qbo_core::sink::postgres::PostgresOptions;

use crate::errors::{config_error, to_py, BindError, BindResult};

pub fn instant(py: Python<'_>, what: &str, value: &Bound<'_, PyAny>) -> BindResult<DateTime<Utc>> {
    if let Ok(s) = value.cast::<PyString>() {
        return qbo_core::time::parse_user_instant(what, &s.to_cow()?).map_err(BindError::from);
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
    Err(config_error(py, format!("{what} must be an ISO date string such as 2025-01-31, a date or a datetime, not {}", value.get_type().name()?)).into())
}

pub fn entity(value: &str) -> BindResult<qbo_core::Entity> {
    Ok(value.parse()?)
}

pub fn filter_field(value: &str) -> BindResult<qbo_core::FilterField> {
    Ok(value.parse()?)
}

/// Python ints arrive as i64 so that negative values get our message, not an OverflowError.
pub fn positive_u32(py: Python<'_>, what: &str, value: i64) -> PyResult<u32> {
    u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| config_error(py, format!("{what} must be a positive integer, got {value}")))
}

/// A keyword option's value, converted once into the core's [`OptionValue`]: `bool` before
/// `int` (a bool is an int in Python), path-likes as their path, lists and tuples of strings.
pub fn option_value(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<OptionValue> {
    if value.is_none() {
        return Ok(OptionValue::None);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(OptionValue::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return value.extract::<i128>().map(OptionValue::Int).map_err(|_| config_error(py, format!("{name} is out of range: {value}")));
    }
    if let Ok(x) = value.cast::<PyFloat>() {
        return Ok(OptionValue::Float(x.value()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(OptionValue::Text(s.to_cow()?.into_owned()));
    }
    if value.hasattr("__fspath__")? {
        let path = py.import("os")?.call_method1("fspath", (value,))?;
        return option_value(py, name, &path);
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items = value.try_iter()?.map(|item| item.and_then(|i| i.str().map(|s| s.to_string()))).collect::<PyResult<Vec<_>>>()?;
        return Ok(OptionValue::List(items));
    }
    Err(config_error(py, format!("{name} cannot be a {}", value.get_type().name()?)))
}

/// Sets `name` on `set` from a Python value.
pub fn set_option<S: OptionSet>(py: Python<'_>, set: &mut S, name: &str, value: &Bound<'_, PyAny>) -> BindResult<()> {
    let value = option_value(py, name, value)?;
    set.set(name, &value).map_err(BindError::from)
}

/// The `postgres` option: a `PostgresWriter` (its target), None or absent.
pub fn postgres_target(py: Python<'_>, value: Option<Bound<'_, PyAny>>) -> PyResult<Option<PostgresOptions>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let writer = value.cast::<crate::postgres::PostgresWriter>().map_err(|_| config_error(py, "postgres must be a qbo_rs.PostgresWriter"))?;
    Ok(Some(writer.get().options.clone()))
}

/// A call's keyword options, handed to the core's option sets that take them: each set parses
/// and checks its own, and a name that no set took is refused, naming what the call accepts.
pub struct Kwargs<'py> {
    py: Python<'py>,
    left: Vec<(String, Bound<'py, PyAny>)>,
    known: Vec<&'static [&'static str]>,
}

impl<'py> Kwargs<'py> {
    pub fn new(py: Python<'py>, options: Option<&Bound<'py, PyDict>>) -> PyResult<Self> {
        let left = options.into_iter().flatten().map(|(key, value)| Ok((key.extract::<String>()?, value))).collect::<PyResult<_>>()?;
        Ok(Kwargs { py, left, known: Vec::new() })
    }

    /// The value of an option of the binding's own (`names` holds just its name), if given.
    pub fn take(&mut self, names: &'static [&'static str]) -> Option<Bound<'py, PyAny>> {
        self.known.push(names);
        let at = self.left.iter().position(|(name, _)| names.contains(&name.as_str()))?;
        Some(self.left.swap_remove(at).1)
    }

    /// Sets on `set` every option it knows.
    pub fn fill<S: OptionSet>(&mut self, set: &mut S) -> BindResult<&mut Self> {
        self.fill_only(set, S::NAMES)
    }

    /// Sets on `set` the options among `names` (a part of what it knows).
    pub fn fill_only<S: OptionSet>(&mut self, set: &mut S, names: &'static [&'static str]) -> BindResult<&mut Self> {
        self.known.push(names);
        for (name, value) in std::mem::take(&mut self.left) {
            if names.contains(&name.as_str()) {
                set_option(self.py, set, &name, &value)?;
            } else {
                self.left.push((name, value));
            }
        }
        Ok(self)
    }

    /// Refuses the first option nothing took.
    pub fn finish(&self) -> BindResult<()> {
        match self.left.first() {
            Some((name, _)) => Err(to_py(self.py, qbo_core::options::unknown_option(name, &self.known)).into()),
            None => Ok(()),
        }
    }
}
