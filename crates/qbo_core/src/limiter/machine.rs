//! The realm's budget kept in a small file, so that every process on the machine pacing the
//! same realm draws from one budget. Mage's scheduler runs each window in its own process
//! (up to `queue_config.concurrency` at once); a limiter per process would multiply the
//! realm's 500 requests/minute and 10 in flight by the number of workers.
//!
//! The file (`<dir>/realm-<realm>-<hash of API host>.limits`, 0600) holds:
//! - the GCRA *theoretical arrival time*: the next instant a request may leave; each
//!   reservation moves it one interval (60 s / requests_per_minute) further;
//! - a shared *pause*: after a 429 every process holds off, not only the one that saw it;
//! - 64 in-flight *slots*, each owned by a process id, with a lease. A process killed with
//!   SIGKILL mid-request leaves its slot behind: a slot whose process no longer exists (same
//!   PID namespace) or whose lease ran out is taken back by the next caller.
//!
//! Every read-modify-write happens under an exclusive `flock` on the file and lasts a few
//! microseconds; callers never block on it (they try the lock and yield). Times are wall-clock
//! nanoseconds, since monotonic clocks are not comparable across reboots and the file may
//! outlive one; a clock step backwards is bounded by [`MAX_AHEAD`]. Nothing is fsynced: after
//! a crash of the machine an empty budget is the right state. Processes may use different
//! pacing: each spaces its own reservations by its own interval and counts the slots against
//! its own `max_in_flight`.
//!
//! The directory must be local to the machine (not NFS: `flock` and process ids are
//! machine-local); containers sharing a volume are safe but fall back to leases to reclaim
//! each other's slots, since a PID from another namespace cannot be checked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"QBORLIM1";
pub const SLOTS: usize = 64;
const HEADER_LEN: usize = 32;
const SLOT_LEN: usize = 32;
const FILE_LEN: usize = HEADER_LEN + SLOTS * SLOT_LEN;

/// A schedule or pause further ahead than this can only come from a clock stepped backwards
/// (reservations are at most 64 intervals ahead, pauses at most a minute): it is reset.
pub const MAX_AHEAD: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    pid: u32,
    /// Inode of the owner's PID namespace (0 if unknown): a PID is only checked in its own.
    pid_ns: u64,
    /// Random per reservation, so a release never frees a slot someone else took back.
    nonce: u64,
    lease_until: u64,
}

impl Slot {
    fn is_free(&self) -> bool {
        self.nonce == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    next_departure: u64,
    pause_until: u64,
    slots: [Slot; SLOTS],
}

impl State {
    fn empty() -> Self {
        State { next_departure: 0, pause_until: 0, slots: [Slot::default(); SLOTS] }
    }

    /// An unreadable file (new, truncated, foreign) reads as an empty budget.
    fn decode(buf: &[u8]) -> Self {
        if buf.len() < FILE_LEN || &buf[..8] != MAGIC {
            return State::empty();
        }
        let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        let mut state = State { next_departure: u64_at(8), pause_until: u64_at(16), slots: [Slot::default(); SLOTS] };
        for (i, slot) in state.slots.iter_mut().enumerate() {
            let at = HEADER_LEN + i * SLOT_LEN;
            *slot = Slot {
                pid: u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")),
                pid_ns: u64_at(at + 8),
                nonce: u64_at(at + 16),
                lease_until: u64_at(at + 24),
            };
        }
        state
    }

    fn encode(&self) -> [u8; FILE_LEN] {
        let mut buf = [0u8; FILE_LEN];
        buf[..8].copy_from_slice(MAGIC);
        buf[8..16].copy_from_slice(&self.next_departure.to_le_bytes());
        buf[16..24].copy_from_slice(&self.pause_until.to_le_bytes());
        for (i, slot) in self.slots.iter().enumerate() {
            let at = HEADER_LEN + i * SLOT_LEN;
            buf[at..at + 4].copy_from_slice(&slot.pid.to_le_bytes());
            buf[at + 8..at + 16].copy_from_slice(&slot.pid_ns.to_le_bytes());
            buf[at + 16..at + 24].copy_from_slice(&slot.nonce.to_le_bytes());
            buf[at + 24..at + 32].copy_from_slice(&slot.lease_until.to_le_bytes());
        }
        buf
    }
}

/// Who this process is, for the slots it takes.
#[derive(Debug, Clone, Copy)]
struct Owner {
    pid: u32,
    pid_ns: u64,
}

impl Owner {
    fn current() -> Self {
        Owner { pid: std::process::id(), pid_ns: current_pid_namespace() }
    }
}

fn current_pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino()).unwrap_or(0)
}

/// Whether a slot's owner is gone for sure. Unknown (other namespace, no permission to
/// signal) counts as alive: the lease will free the slot instead.
fn owner_is_gone(slot: &Slot, me: Owner) -> bool {
    if slot.pid_ns == 0 || slot.pid_ns != me.pid_ns {
        return false;
    }
    if slot.pid == me.pid {
        return false;
    }
    let Some(pid) = i32::try_from(slot.pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return true;
    };
    matches!(rustix::process::test_kill_process(pid), Err(e) if e == rustix::io::Errno::SRCH)
}

pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// What one attempt to reserve got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is held; the request may leave at `departure` (wall-clock nanoseconds).
    Granted { slot: SlotTicket, departure: u64 },
    /// `max_in_flight` slots are taken: try again shortly.
    Full,
    /// Another process holds the file lock right now: try again at once.
    Busy,
}

/// Proof of a held slot, needed to release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTicket {
    index: usize,
    nonce: u64,
}

/// One realm's shared budget file, opened by this process.
pub struct MachineSchedule {
    /// `flock` excludes other open files, not other threads using this one.
    in_process: Mutex<()>,
    file: File,
    path: PathBuf,
    interval_nanos: u64,
    max_in_flight: usize,
    lease: Duration,
    owner: Owner,
}

impl std::fmt::Debug for MachineSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineSchedule").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The budget file's name for a realm on an API host. The realm id is kept readable (it is
/// not a secret); the host is hashed so sandbox and production never share a file.
pub fn file_name(api_base: &str, realm_id: &str) -> String {
    let realm: String = realm_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect();
    format!("realm-{realm}-{}.limits", crate::credentials::endpoint_tag(api_base))
}

impl MachineSchedule {
    /// Opens (creating if needed, 0700 directory and 0600 file) the budget file of a realm.
    /// `lease` bounds how long a slot can outlive a process that cannot be checked.
    pub fn open(dir: &Path, api_base: &str, realm_id: &str, requests_per_minute: u32, max_in_flight: u32, lease: Duration) -> io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let path = dir.join(file_name(api_base, realm_id));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
        Ok(MachineSchedule {
            in_process: Mutex::new(()),
            file,
            path,
            interval_nanos: 60_000_000_000 / u64::from(requests_per_minute.max(1)),
            max_in_flight: (max_in_flight as usize).clamp(1, SLOTS),
            lease,
            owner: Owner::current(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `change` on the state under the file lock. `None` if another process holds it.
    fn try_update<R>(&self, change: impl FnOnce(&mut State, u64) -> R) -> io::Result<Option<R>> {
        let _in_process = match self.in_process.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        match self.file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let result = self.update_locked(change);
        let _ = self.file.unlock();
        result.map(Some)
    }

    /// Like [`Self::try_update`] but waits for the lock (used on release, from `Drop`).
    fn update<R>(&self, change: impl FnOnce(&mut State, u64) -> R) -> io::Result<R> {
        let _in_process = self.in_process.lock().unwrap_or_else(|p| p.into_inner());
        self.file.lock()?;
        let result = self.update_locked(change);
        let _ = self.file.unlock();
        result
    }

    fn update_locked<R>(&self, change: impl FnOnce(&mut State, u64) -> R) -> io::Result<R> {
        let mut buf = [0u8; FILE_LEN];
        let mut read = 0;
        while read < FILE_LEN {
            match self.file.read_at(&mut buf[read..], read as u64)? {
                0 => break,
                n => read += n,
            }
        }
        let mut state = State::decode(&buf[..read]);
        let before = state.clone();
        let result = change(&mut state, now_nanos());
        if state != before || read < FILE_LEN {
            self.file.write_all_at(&state.encode(), 0)?;
        }
        Ok(result)
    }

    /// Takes a slot and the next departure time if fewer than `max_in_flight` slots are held.
    pub fn try_reserve(&self) -> io::Result<Reservation> {
        let me = self.owner;
        let interval = self.interval_nanos;
        let max_in_flight = self.max_in_flight;
        let lease = self.lease.as_nanos() as u64;
        let nonce = loop {
            let n = rand::random::<u64>();
            if n != 0 {
                break n;
            }
        };
        let reserved = self.try_update(|state, now| {
            let horizon = now.saturating_add(MAX_AHEAD.as_nanos() as u64);
            if state.next_departure > horizon {
                state.next_departure = now;
            }
            if state.pause_until > horizon {
                state.pause_until = 0;
            }
            for slot in state.slots.iter_mut().filter(|s| !s.is_free()) {
                if slot.lease_until <= now || owner_is_gone(slot, me) {
                    *slot = Slot::default();
                }
            }
            let held = state.slots.iter().filter(|s| !s.is_free()).count();
            if held >= max_in_flight {
                return Reservation::Full;
            }
            let index = state.slots.iter().position(Slot::is_free).expect("fewer than SLOTS held");
            let departure = state.next_departure.max(now).max(state.pause_until);
            state.next_departure = departure + interval;
            state.slots[index] = Slot { pid: me.pid, pid_ns: me.pid_ns, nonce, lease_until: departure.saturating_add(lease) };
            Reservation::Granted { slot: SlotTicket { index, nonce }, departure }
        })?;
        Ok(reserved.unwrap_or(Reservation::Busy))
    }

    /// Gives a slot back (a no-op if it was already taken back as expired).
    pub fn release(&self, ticket: SlotTicket) -> io::Result<()> {
        self.update(|state, _| {
            let slot = &mut state.slots[ticket.index];
            if slot.nonce == ticket.nonce {
                *slot = Slot::default();
            }
        })
    }

    /// Every process holds off until `now + wait` (after a 429 for this realm).
    pub fn pause(&self, wait: Duration) -> io::Result<()> {
        self.update(|state, now| {
            state.pause_until = state.pause_until.max(now.saturating_add(wait.as_nanos() as u64));
        })
    }

    /// Slots held right now (for tests and diagnostics).
    pub fn held_slots(&self) -> io::Result<usize> {
        self.update(|state, _| state.slots.iter().filter(|s| !s.is_free()).count())
    }
}

/// Where budget files live unless told otherwise: `$QBO_LIMITER_DIR`, else
/// `$XDG_RUNTIME_DIR/qbo_rs`, else `<temp dir>/qbo_rs-<uid>`: machine-local, per user, and
/// cleaned at reboot, which is exactly the lifetime of the state.
pub fn default_dir() -> PathBuf {
    let env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some(dir) = env("QBO_LIMITER_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(runtime) = env("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join("qbo_rs");
    }
    std::env::temp_dir().join(format!("qbo_rs-{}", rustix::process::getuid().as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, rpm: u32, in_flight: u32) -> MachineSchedule {
        MachineSchedule::open(dir, "http://127.0.0.1:1", "9130", rpm, in_flight, Duration::from_secs(180)).unwrap()
    }

    /// A schedule in a directory of its own, which lives as long as the `TempDir`.
    fn fresh(rpm: u32, in_flight: u32) -> (tempfile::TempDir, MachineSchedule) {
        let dir = tempfile::tempdir().unwrap();
        let schedule = open(dir.path(), rpm, in_flight);
        (dir, schedule)
    }

    fn granted(r: Reservation) -> (SlotTicket, u64) {
        match r {
            Reservation::Granted { slot, departure } => (slot, departure),
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    #[test]
    fn state_round_trips_and_garbage_reads_empty() {
        let mut s = State::empty();
        s.next_departure = 7;
        s.pause_until = 9;
        s.slots[3] = Slot { pid: 42, pid_ns: 5, nonce: 11, lease_until: 13 };
        assert_eq!(State::decode(&s.encode()), s);
        assert_eq!(State::decode(b"garbage"), State::empty());
        let mut torn = s.encode();
        torn[0] = b'X';
        assert_eq!(State::decode(&torn), State::empty());
    }

    #[test]
    fn two_openers_share_one_schedule() {
        // Two handles on one file behave like two processes: reservations interleave on
        // one timeline spaced by the interval, whoever makes them.
        let (dir, a) = fresh(600, 10);
        let b = open(dir.path(), 600, 10);
        let (ta, da) = granted(a.try_reserve().unwrap());
        let (tb, db) = granted(b.try_reserve().unwrap());
        let (tc, dc) = granted(a.try_reserve().unwrap());
        assert_eq!(db - da, 100_000_000, "600/min is one request every 100 ms");
        assert_eq!(dc - db, 100_000_000);
        for t in [ta, tb, tc] {
            a.release(t).unwrap();
        }
        assert_eq!(b.held_slots().unwrap(), 0);
    }

    #[test]
    fn slots_bound_requests_in_flight_across_openers() {
        let (dir, a) = fresh(60_000, 2);
        let b = open(dir.path(), 60_000, 2);
        let (first, _) = granted(a.try_reserve().unwrap());
        let _second = granted(b.try_reserve().unwrap());
        assert_eq!(a.try_reserve().unwrap(), Reservation::Full);
        assert_eq!(b.try_reserve().unwrap(), Reservation::Full);
        a.release(first).unwrap();
        granted(b.try_reserve().unwrap());
    }

    #[test]
    fn a_stale_release_does_not_free_a_retaken_slot() {
        let (_dir, a) = fresh(60_000, 1);
        let (old, _) = granted(a.try_reserve().unwrap());
        // Simulate the lease running out and the slot being retaken by someone else.
        a.update(|s, now| s.slots[old.index].lease_until = now - 1).unwrap();
        let (new, _) = granted(a.try_reserve().unwrap());
        assert_eq!(new.index, old.index);
        a.release(old).unwrap();
        assert_eq!(a.held_slots().unwrap(), 1, "the stale release must not free the new holder's slot");
        a.release(new).unwrap();
        assert_eq!(a.held_slots().unwrap(), 0);
    }

    #[test]
    fn slots_of_dead_processes_are_taken_back() {
        let (_dir, a) = fresh(60_000, 1);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let ns = current_pid_namespace();
        a.update(|s, now| s.slots[0] = Slot { pid: dead_pid, pid_ns: ns, nonce: 99, lease_until: now + 3_600_000_000_000 }).unwrap();
        granted(a.try_reserve().unwrap());
        assert_eq!(a.held_slots().unwrap(), 1);
    }

    #[test]
    fn slots_of_live_processes_in_other_namespaces_wait_for_their_lease() {
        let (_dir, a) = fresh(60_000, 1);
        a.update(|s, now| s.slots[0] = Slot { pid: 1, pid_ns: 12345, nonce: 99, lease_until: now + 3_600_000_000_000 }).unwrap();
        assert_eq!(a.try_reserve().unwrap(), Reservation::Full);
        a.update(|s, now| s.slots[0].lease_until = now - 1).unwrap();
        granted(a.try_reserve().unwrap());
    }

    #[test]
    fn a_pause_delays_every_opener() {
        let (dir, a) = fresh(60_000, 10);
        let b = open(dir.path(), 60_000, 10);
        let before = now_nanos();
        a.pause(Duration::from_secs(2)).unwrap();
        let (_, departure) = granted(b.try_reserve().unwrap());
        assert!(departure >= before + 2_000_000_000, "{departure} vs {before}");
    }

    #[test]
    fn a_schedule_far_in_the_future_is_reset() {
        // What a wall clock stepped back by an hour looks like.
        let (_dir, a) = fresh(600, 10);
        a.update(|s, now| {
            s.next_departure = now + 3_600_000_000_000;
            s.pause_until = now + 3_600_000_000_000;
        })
        .unwrap();
        let before = now_nanos();
        let (_, departure) = granted(a.try_reserve().unwrap());
        assert!(departure < before + 1_000_000_000, "reset to now, not an hour ahead");
    }

    #[test]
    fn a_busy_lock_is_reported_not_waited_for() {
        let (_dir, a) = fresh(600, 10);
        let other = File::open(a.path()).unwrap();
        other.lock().unwrap();
        assert_eq!(a.try_reserve().unwrap(), Reservation::Busy);
        other.unlock().unwrap();
        granted(a.try_reserve().unwrap());
    }

    #[test]
    fn file_names_keep_the_realm_and_separate_hosts() {
        let sandbox = file_name("https://sandbox-quickbooks.api.intuit.com", "9130 ../x");
        let production = file_name("https://quickbooks.api.intuit.com", "9130 ../x");
        assert!(sandbox.starts_with("realm-9130x-"), "{sandbox}");
        assert_ne!(sandbox, production);
    }
}
