//! Every mutating filesystem call goes through [`Io`], so a test can stop the store after any
//! step (feature `failpoints`) and observe exactly what a SIGKILL at that instant would leave.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use crate::error::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Default)]
pub(crate) struct Io {
    /// Whether to fsync at all (see `StoreOptions::fsync`).
    pub fsync: bool,
    /// Mutating steps taken so far (writes, fsyncs, renames, truncations).
    #[cfg(any(test, feature = "failpoints"))]
    pub steps: u64,
    /// Fail when `steps` reaches this number.
    #[cfg(any(test, feature = "failpoints"))]
    pub fail_at: Option<u64>,
}

#[cfg(unix)]
fn pwrite_all(f: &File, buf: &[u8], off: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, off)
}

#[cfg(windows)]
fn pwrite_all(f: &File, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_write(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

/// Writes all of `parts` at `off` with as few `pwritev` calls as the iovec limit allows.
#[cfg(unix)]
fn pwritev_all(f: &File, parts: &[&[u8]], mut off: u64) -> io::Result<()> {
    use std::io::IoSlice;
    // Linux's UIO_MAXIOV; larger lists are split.
    const MAX_IOV: usize = 1024;
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len().min(MAX_IOV));
    for chunk in parts.chunks(MAX_IOV) {
        slices.clear();
        slices.extend(chunk.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)));
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let n = match rustix::io::pwritev(f, rest, off) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            off += n as u64;
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn pwritev_all(f: &File, parts: &[&[u8]], mut off: u64) -> io::Result<()> {
    for p in parts {
        pwrite_all(f, p, off)?;
        off += p.len() as u64;
    }
    Ok(())
}

/// The first `len` bytes of `parts`, written at `off` (a torn write, for crash tests).
fn write_parts_prefix(f: &File, parts: &[&[u8]], mut off: u64, mut len: usize) -> io::Result<()> {
    for p in parts {
        if len == 0 {
            break;
        }
        let take = p.len().min(len);
        pwrite_all(f, &p[..take], off)?;
        off += take as u64;
        len -= take;
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn pread_exact(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(windows)]
pub(crate) fn pread_exact(f: &File, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_read(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        off += n as u64;
    }
    Ok(())
}

/// A file's identity: inode on unix, 0 (unknown) elsewhere.
#[cfg(unix)]
pub(crate) fn file_id(m: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
pub(crate) fn file_id(_m: &fs::Metadata) -> u64 {
    0
}

impl Io {
    #[allow(clippy::needless_update)] // the other fields exist only with failpoints
    pub fn new(fsync: bool) -> Self {
        Io { fsync, ..Io::default() }
    }

    /// Counts one step; errors when the injected failure point is reached.
    #[inline]
    fn step(&mut self) -> bool {
        #[cfg(any(test, feature = "failpoints"))]
        {
            self.steps += 1;
            if self.fail_at == Some(self.steps) {
                return true;
            }
        }
        false
    }

    #[cfg(any(test, feature = "failpoints"))]
    fn injected(&self) -> StoreError {
        StoreError::InjectedFault(self.steps)
    }

    #[cfg(not(any(test, feature = "failpoints")))]
    fn injected(&self) -> StoreError {
        unreachable!()
    }

    /// Positioned write of the whole buffer. An injected fault writes only the first half, like
    /// a process killed in the middle of a large write.
    pub fn write_at(&mut self, f: &File, buf: &[u8], off: u64, path: &Path) -> Result<()> {
        if self.step() {
            let _ = pwrite_all(f, &buf[..buf.len() / 2], off);
            return Err(self.injected());
        }
        pwrite_all(f, buf, off).map_err(|e| StoreError::io("writing", path, e))
    }

    /// Positioned write of `parts` back to back, without first copying them into one buffer
    /// (a commit's appended lines stay in the batches they were built in). An injected fault
    /// writes only the first half of the bytes, as [`Io::write_at`] does.
    pub fn write_parts_at(&mut self, f: &File, parts: &[&[u8]], off: u64, path: &Path) -> Result<()> {
        if self.step() {
            let total: usize = parts.iter().map(|p| p.len()).sum();
            let _ = write_parts_prefix(f, parts, off, total / 2);
            return Err(self.injected());
        }
        pwritev_all(f, parts, off).map_err(|e| StoreError::io("writing", path, e))
    }

    /// fdatasync (the length is flushed too); a no-op when fsync is off.
    pub fn sync(&mut self, f: &File, path: &Path) -> Result<()> {
        if !self.fsync {
            return Ok(());
        }
        if self.step() {
            return Err(self.injected());
        }
        // Unit tests count sync steps (a crash can land on each) but skip the slow syscall:
        // page-cache contents are what a killed process leaves. Integration tests sync for real.
        if cfg!(test) {
            return Ok(());
        }
        f.sync_data().map_err(|e| StoreError::io("syncing", path, e))
    }

    /// fsync of a directory so a rename in it is durable; a no-op when fsync is off or on
    /// platforms where directories cannot be opened.
    pub fn sync_dir(&mut self, dir: &Path) -> Result<()> {
        if !self.fsync {
            return Ok(());
        }
        if self.step() {
            return Err(self.injected());
        }
        #[cfg(unix)]
        if !cfg!(test) {
            let d = File::open(dir).map_err(|e| StoreError::io("opening directory", dir, e))?;
            d.sync_all().map_err(|e| StoreError::io("syncing directory", dir, e))?;
        }
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    pub fn set_len(&mut self, f: &File, len: u64, path: &Path) -> Result<()> {
        if self.step() {
            return Err(self.injected());
        }
        f.set_len(len).map_err(|e| StoreError::io("truncating", path, e))
    }

    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        if self.step() {
            return Err(self.injected());
        }
        fs::rename(from, to).map_err(|e| StoreError::io("renaming", from, e))
    }
}

pub(crate) fn open_rw(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path).map_err(|e| StoreError::io("opening", path, e))
}

pub(crate) fn create_truncate(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(|e| StoreError::io("creating", path, e))
}

/// Reads a whole small file; None when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map_err(|e| StoreError::io("reading", path, e))?;
            Ok(Some(b))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("reading", path, e)),
    }
}

pub(crate) fn metadata_optional(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("inspecting", path, e)),
    }
}

pub(crate) fn read_range(f: &File, off: u64, len: u64, path: &Path) -> Result<Vec<u8>> {
    let len =
        usize::try_from(len).map_err(|_| StoreError::TooLarge { path: path.to_path_buf(), detail: format!("a read of {len} bytes does not fit in memory") })?;
    let mut b = vec![0u8; len];
    pread_exact(f, &mut b, off).map_err(|e| StoreError::io("reading", path, e))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(n: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        // Varied sizes, empty parts included, and more parts than one pwritev call takes.
        let owned: Vec<Vec<u8>> = (0..n).map(|i| vec![b'a' + (i % 26) as u8; i % 7]).collect();
        let joined = owned.concat();
        (owned, joined)
    }

    #[test]
    fn write_parts_at_writes_every_part_in_order_past_the_iovec_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = open_rw(&path, true).unwrap();
        f.set_len(5).unwrap();
        let (owned, joined) = parts_of(2500);
        let parts: Vec<&[u8]> = owned.iter().map(|p| p.as_slice()).collect();
        Io::new(false).write_parts_at(&f, &parts, 5, &path).unwrap();
        let got = fs::read(&path).unwrap();
        assert_eq!(&got[..5], &[0u8; 5]);
        assert_eq!(&got[5..], &joined[..]);
    }

    #[test]
    fn an_injected_fault_in_write_parts_at_leaves_the_first_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = open_rw(&path, true).unwrap();
        let (owned, joined) = parts_of(300);
        let parts: Vec<&[u8]> = owned.iter().map(|p| p.as_slice()).collect();
        let mut io = Io { fail_at: Some(1), ..Io::new(false) };
        assert!(matches!(io.write_parts_at(&f, &parts, 0, &path), Err(StoreError::InjectedFault(1))));
        assert_eq!(fs::read(&path).unwrap(), &joined[..joined.len() / 2]);
    }
}
