//! Options by name. Each option set is one core struct that owns its defaults and its one
//! validation ([`BackfillRequest`](crate::backfill::BackfillRequest),
//! [`SinkConfig`](crate::sink::SinkConfig)); a caller that holds options as names and values
//! (the Python binding's keyword arguments) sets them here, each converted once into the
//! field's type, so a new option is one field, one default and one arm of `set`.

use std::path::PathBuf;

use crate::error::Error;

/// A value as a dynamically typed caller passed it.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
    List(Vec<String>),
}

impl OptionValue {
    fn kind(&self) -> &'static str {
        match self {
            OptionValue::None => "None",
            OptionValue::Bool(_) => "a boolean",
            OptionValue::Int(_) => "an integer",
            OptionValue::Float(_) => "a float",
            OptionValue::Text(_) => "a string",
            OptionValue::List(_) => "a list",
        }
    }

    fn wrong(&self, name: &str, wanted: &str) -> Error {
        let shown = match self {
            OptionValue::Text(s) => format!(" {s:?}"),
            OptionValue::Bool(b) => format!(" {}", if *b { "True" } else { "False" }),
            _ => String::new(),
        };
        Error::config(format!("{name} must be {wanted}, not {}{shown}", self.kind()))
    }

    /// A whole number that fits `T` (a boolean is not a number here).
    pub fn whole<T: TryFrom<i128>>(&self, name: &str) -> Result<T, Error> {
        match self {
            OptionValue::Int(n) => T::try_from(*n).map_err(|_| Error::config(format!("{name} is out of range: {n}"))),
            other => Err(other.wrong(name, "a whole number")),
        }
    }

    /// Seconds as a number (an integer or a float).
    pub fn seconds(&self, name: &str) -> Result<f64, Error> {
        match self {
            OptionValue::Int(n) => Ok(*n as f64),
            OptionValue::Float(x) => Ok(*x),
            other => Err(other.wrong(name, "a number of seconds")),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<bool, Error> {
        match self {
            OptionValue::Bool(b) => Ok(*b),
            other => Err(other.wrong(name, "True or False")),
        }
    }

    pub fn text(&self, name: &str) -> Result<String, Error> {
        match self {
            OptionValue::Text(s) => Ok(s.clone()),
            other => Err(other.wrong(name, "a string")),
        }
    }

    pub fn optional_text(&self, name: &str) -> Result<Option<String>, Error> {
        match self {
            OptionValue::None => Ok(None),
            other => other.text(name).map(Some),
        }
    }

    /// A path that names something: an empty one would silently mean the current folder.
    pub fn path(&self, name: &str) -> Result<PathBuf, Error> {
        let text = self.text(name)?;
        if text.trim().is_empty() {
            return Err(Error::config(format!("{name} is empty: give a folder, e.g. \"data\"")));
        }
        Ok(PathBuf::from(text))
    }

    /// None, one label, or a list of labels.
    pub fn labels(&self, name: &str) -> Result<Option<Vec<String>>, Error> {
        match self {
            OptionValue::None => Ok(None),
            OptionValue::Text(s) => Ok(Some(vec![s.clone()])),
            OptionValue::List(items) => Ok(Some(items.clone())),
            other => Err(other.wrong(name, "a label or a list of labels")),
        }
    }
}

/// An option set settable by name.
pub trait OptionSet {
    /// Every name [`OptionSet::set`] takes, for the error that lists them.
    const NAMES: &'static [&'static str];

    /// Sets one option, converted into its field's type; an unknown name is an error.
    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error>;
}

/// The error for a name no option set takes.
pub fn unknown_option(name: &str, known: &[&[&str]]) -> Error {
    let mut names: Vec<&str> = known.iter().flat_map(|set| set.iter().copied()).collect();
    names.sort_unstable();
    Error::config(format!("unknown option {name:?}; the options are {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_only_into_their_own_kind() {
        assert_eq!(OptionValue::Int(7).whole::<u32>("page_size").unwrap(), 7);
        let err = OptionValue::Bool(true).whole::<u32>("page_size").unwrap_err().to_string();
        assert!(err.contains("page_size must be a whole number, not a boolean True"), "{err}");
        let err = OptionValue::Int(1 << 70).whole::<u32>("page_size").unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        assert!(OptionValue::Text("abc".into()).whole::<u32>("page_size").unwrap_err().to_string().contains("\"abc\""));
        assert!(OptionValue::Text(" ".into()).path("data_dir").is_err());
        assert_eq!(OptionValue::Text("w1".into()).labels("windows").unwrap(), Some(vec!["w1".to_string()]));
        assert_eq!(OptionValue::Float(1.5).seconds("timeout").unwrap(), 1.5);
    }
}
