//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while opening, writing or compacting a store.
///
/// Every variant names the file involved and its message says what to do about it, because
/// these errors end up in Mage block logs read by people who did not write this code.
/// A failed `upsert` never leaves a half-applied batch behind: the batch either committed
/// (then `version_of` shows it) or it did not, and the next operation repairs any leftovers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system call failed.
    #[error("{}", io_message(.op, .path, .source))]
    Io {
        /// What we were doing, e.g. "writing", "renaming", "locking".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A record handed to `upsert` cannot be stored as one line.
    #[error(
        "record #{index} (id {id:?}) cannot be written to {}: {reason}; pass one compact JSON \
         object per record (no newline) with an id of at most 65535 bytes",
        .path.display()
    )]
    InvalidRecord {
        /// The data file.
        path: PathBuf,
        /// Position of the record in the batch.
        index: usize,
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// While rebuilding the index from the data file, a line could not be understood.
    /// The store refuses to open rather than silently dropping that line.
    #[error(
        "line {line} of {} is not a record this store understands ({reason}): fix or remove \
         that line by hand, then open the store again (nothing was changed; the store never \
         drops data silently). Starts with: {snippet:?}",
        .path.display()
    )]
    UnparseableLine {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Why it was rejected.
        reason: &'static str,
        /// The first bytes of the line, lossily decoded.
        snippet: String,
    },
    /// A file is too large for this store's limits.
    #[error(
        "{} is too large: {detail}; split the data into several files",
        .path.display()
    )]
    TooLarge {
        /// The file concerned.
        path: PathBuf,
        /// Which limit was hit.
        detail: String,
    },
    /// A block of the on-disk index failed its checksum after the store was opened (the disk
    /// or another program changed it). Nothing was written by the failed operation.
    #[error(
        "the index of {} is corrupt ({detail}): delete the .qbo_rs directory beside the data \
         file while no writer runs; the next open rebuilds the index from the data file",
        .path.display()
    )]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A fault injected by a test (feature `failpoints`): the store must be dropped and reopened,
    /// exactly as if the process had been killed at this point.
    #[cfg(any(test, feature = "failpoints"))]
    #[error("injected fault after {0} I/O steps (test only): drop the store and reopen it")]
    InjectedFault(u64),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io { op, path: path.to_path_buf(), source }
    }

    /// True when this error came from the operating system (disk full, permissions, ...), as
    /// opposed to bad input or an unreadable data file. Useful to decide whether a retry can help.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

fn io_message(op: &str, path: &Path, e: &io::Error) -> String {
    struct Msg<'a>(&'a str, &'a Path, &'a io::Error);
    impl fmt::Display for Msg<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let (op, path, e) = (self.0, self.1.display(), self.2);
            match e.kind() {
                io::ErrorKind::PermissionDenied => write!(f, "permission denied {op} {path}: check the directory is writable by this user ({e})"),
                io::ErrorKind::StorageFull => write!(
                    f,
                    "no space left on the device while {op} {path}: free some disk space and run \
                     again; the last batch was not committed ({e})"
                ),
                io::ErrorKind::NotFound => write!(f, "{path} not found while {op}: was it deleted while the store was open? ({e})"),
                io::ErrorKind::ReadOnlyFilesystem => write!(
                    f,
                    "{path} is on a read-only filesystem ({op}): point the store at a writable \
                     directory ({e})"
                ),
                _ => write!(f, "I/O error {op} {path}: {e}"),
            }
        }
    }
    Msg(op, path, e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_message_says_what_to_do() {
        let e = StoreError::io("writing", Path::new("data/invoices.txt"), io::Error::from(io::ErrorKind::PermissionDenied));
        let msg = e.to_string();
        assert!(msg.starts_with("permission denied writing data/invoices.txt: check the directory is writable"), "{msg}");
        assert!(e.is_io());
    }
}
