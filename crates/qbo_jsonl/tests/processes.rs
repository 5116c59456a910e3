#![allow(clippy::manual_is_multiple_of)]
//! Real processes: a writer killed with SIGKILL at random instants, and two writer processes
//! racing on the same file. The test binary re-invokes itself as the child (`child_entry`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qbo_jsonl::{JsonlStore, StoreOptions, StoreRecord, Version};

const CHILD_ENV: &str = "QBO_JSONL_TEST_CHILD";
const IDS: u64 = 300;

#[derive(serde::Deserialize)]
struct K {
    id: String,
    v: i64,
    t: u64,
}

fn extract(line: &[u8]) -> Option<(String, Version)> {
    let k: K = serde_json::from_slice(line).ok()?;
    Some((k.id, Version { updated_at_ms: k.v, sync_token: k.t }))
}

fn options(fsync: bool) -> StoreOptions {
    // Small memtables: the writers merge into new index snapshots every few batches.
    StoreOptions { fsync, compact_min_waste_bytes: 256 << 10, index_memory_entries: 64, ..StoreOptions::new(extract) }
}

/// Batch `k` of writer `w`: deterministic ids, version `k`, token `w`, varying line lengths so
/// batches mix appends, in-place updates and relocations.
fn batch(k: u64, w: u64) -> Vec<StoreRecord> {
    let n = 20 + (k * 17) % 60;
    (0..n)
        .map(|j| {
            let id = (k * 7 + j * 13 + w * 5) % IDS;
            let pad = ((k * 31 + id * 7) % 400) as usize;
            let id = if id % 10 == 0 { format!("c-{id}") } else { id.to_string() };
            let line = format!(r#"{{"id":"{id}","v":{k},"t":{w},"pad":"{}"}}"#, "x".repeat(pad));
            StoreRecord { id, version: Version { updated_at_ms: k as i64, sync_token: w }, line: line.into_bytes() }
        })
        .collect()
}

/// Child mode. Does nothing unless the environment asks for it.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else { return };
    let path = PathBuf::from(std::env::var("QBO_JSONL_TEST_PATH").unwrap());
    let start: u64 = std::env::var("QBO_JSONL_TEST_START").unwrap().parse().unwrap();
    let end: u64 = std::env::var("QBO_JSONL_TEST_END").unwrap().parse().unwrap();
    let w: u64 = std::env::var("QBO_JSONL_TEST_WRITER").unwrap().parse().unwrap();
    let fsync = mode == "fsync";
    let mut s = JsonlStore::open(&path, options(fsync)).unwrap();
    for k in start..end {
        println!("begin {k}");
        s.upsert(batch(k, w)).unwrap();
        println!("done {k}");
    }
}

fn spawn_child(path: &Path, start: u64, end: u64, w: u64, fsync: bool) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, if fsync { "fsync" } else { "nofsync" })
        .env("QBO_JSONL_TEST_PATH", path)
        .env("QBO_JSONL_TEST_START", start.to_string())
        .env("QBO_JSONL_TEST_END", end.to_string())
        .env("QBO_JSONL_TEST_WRITER", w.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Checks invariant 1 and 2 on the raw file; returns id → (version, line).
/// A file's records by id: version and line.
type Contents = BTreeMap<String, (Version, String)>;

/// `expected` after batch `k` of writer `writer` is upserted (the newest version of an id wins).
fn apply_batch(expected: &mut Contents, k: u64, writer: u64) {
    for r in batch(k, writer) {
        let e = expected.entry(r.id.clone()).or_insert((r.version, String::new()));
        if r.version >= e.0 {
            *e = (r.version, String::from_utf8(r.line).unwrap());
        }
    }
}

fn read_file(path: &Path) -> Contents {
    let data = std::fs::read(path).unwrap();
    assert!(data.is_empty() || data.ends_with(b"\n"));
    let text = String::from_utf8(data).unwrap();
    let mut out = BTreeMap::new();
    for (n, l) in text.lines().enumerate() {
        let c = l.trim_matches(' ');
        assert!(c.starts_with('{') && c.ends_with('}'), "line {}: {l:?}", n + 1);
        let (id, v) = extract(c.as_bytes()).unwrap();
        assert!(out.insert(id.clone(), (v, c.to_string())).is_none(), "duplicate id {id}");
    }
    out
}

/// A fresh folder and the path of the data file `name` in it, for a test that starts writer
/// processes; None in those processes (they run this test binary, and must not run the test).
fn data_file_of_the_parent(name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if std::env::var(CHILD_ENV).is_ok() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join(name);
    Some((dir, path))
}

fn pseudo_random(n: u64) -> u64 {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    (t ^ (t >> 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

#[test]
fn sigkill_at_random_instants_never_tears_a_batch() {
    let Some((_dir, path)) = data_file_of_the_parent("invoices.txt") else { return };
    let mut committed: Vec<u64> = Vec::new(); // batches known committed
    let mut next = 1u64;
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut rounds = 0;
    let mut in_flight_committed = 0;
    while rounds < 8 && Instant::now() < deadline {
        rounds += 1;
        let fsync = rounds % 2 == 0;
        let mut child = spawn_child(&path, next, u64::MAX, 0, fsync);
        let stdout = child.stdout.take().unwrap();
        // Let it start writing, then kill at a random instant.
        let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());
        std::thread::sleep(Duration::from_millis(150 + pseudo_random(400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut begun = None;
        for l in &lines {
            if let Some(k) = l.strip_prefix("begin ") {
                begun = Some(k.parse::<u64>().unwrap());
            } else if let Some(k) = l.strip_prefix("done ") {
                committed.push(k.parse().unwrap());
            }
        }
        let in_flight = begun.filter(|k| !committed.contains(k));

        let s = JsonlStore::open(&path, options(false)).unwrap();
        let on_disk = read_file(&path);
        // Expected: every committed batch applied (newest version wins).
        let mut expected = Contents::new();
        let mut sorted = committed.clone();
        sorted.sort_unstable();
        for &k in &sorted {
            apply_batch(&mut expected, k, 0);
        }
        if on_disk != expected {
            // Only legal difference: the in-flight batch committed before the kill, wholly.
            let k = in_flight.unwrap_or_else(|| panic!("round {rounds}: state differs with no batch in flight"));
            apply_batch(&mut expected, k, 0);
            assert_eq!(on_disk, expected, "round {rounds}: batch {k} applied partially");
            committed.push(k);
            in_flight_committed += 1;
        }
        assert_eq!(s.len(), on_disk.len());
        for (id, (v, _)) in &on_disk {
            assert_eq!(s.version_of(id).unwrap(), Some(*v));
        }
        next = begun.map_or(next, |k| k + 1);
    }
    eprintln!(
        "sigkill test: {rounds} kills, {} batches committed, {in_flight_committed} kills landed after a commit point but before `upsert` returned",
        committed.len()
    );
    assert!(committed.len() > 5, "the child made too little progress: {committed:?}");
}

#[test]
fn two_writer_processes_converge_to_max_versions() {
    let Some((_dir, path)) = data_file_of_the_parent("customers.txt") else { return };
    // Writer 0 runs batches 0..60, writer 1 runs 30..90 (overlapping ids and versions).
    let mut a = spawn_child(&path, 0, 60, 0, false);
    let mut b = spawn_child(&path, 30, 90, 1, false);
    for c in [&mut a, &mut b] {
        let out = c.wait_with_output_ref();
        assert!(out, "writer failed");
    }
    let mut expected = Contents::new();
    for (w, range) in [(0u64, 0u64..60), (1, 30..90)] {
        for k in range {
            apply_batch(&mut expected, k, w);
        }
    }
    let s = JsonlStore::open(&path, options(false)).unwrap();
    assert_eq!(read_file(&path), expected);
    assert_eq!(s.len(), expected.len());
    let ids: BTreeSet<_> = expected.keys().collect();
    assert!(ids.len() > 100);
}

trait WaitOk {
    fn wait_with_output_ref(&mut self) -> bool;
}

impl WaitOk for std::process::Child {
    fn wait_with_output_ref(&mut self) -> bool {
        if let Some(out) = self.stdout.take() {
            let _ = BufReader::new(out).lines().count();
        }
        self.wait().map(|s| s.success()).unwrap_or(false)
    }
}
