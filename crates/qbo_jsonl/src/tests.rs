//! Unit, model-based and crash-injection tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::run;
use crate::*;

#[derive(serde::Deserialize)]
struct K {
    id: String,
    v: i64,
    t: u64,
}

pub(crate) fn extract(line: &[u8]) -> Option<(String, Version)> {
    let k: K = serde_json::from_slice(line).ok()?;
    Some((k.id, Version { updated_at_ms: k.v, sync_token: k.t }))
}

/// Small memtables, so that merges into the on-disk snapshot happen all the time in tests.
const MEM: usize = 5;

fn opts() -> StoreOptions {
    StoreOptions { fsync: false, index_memory_entries: MEM, ..StoreOptions::new(extract) }
}

/// The default memtable: merges only when the index log is bloated.
fn big_mem() -> StoreOptions {
    StoreOptions { index_memory_entries: StoreOptions::new(extract).index_memory_entries, ..opts() }
}

fn line(id: &str, v: i64, t: u64, pad: usize) -> Vec<u8> {
    format!(r#"{{"id":"{id}","v":{v},"t":{t},"p":"{}"}}"#, "x".repeat(pad)).into_bytes()
}

fn rec(id: &str, v: i64, pad: usize) -> StoreRecord {
    StoreRecord { id: id.into(), version: Version { updated_at_ms: v, sync_token: 0 }, line: line(id, v, 0, pad) }
}

type Model = BTreeMap<String, (Version, Vec<u8>)>;

/// Upserts `batch` into the store and into the model the store must match.
fn upsert_both(s: &mut JsonlStore, model: &mut Model, batch: Vec<StoreRecord>) -> UpsertOutcome {
    apply_model(model, &batch);
    s.upsert(batch).unwrap()
}

/// Checks the store against the model, then a fresh instance opened with `options`.
fn check_reopened(s: JsonlStore, p: &Path, options: StoreOptions, model: &Model) {
    check(&s, model);
    drop(s);
    check(&JsonlStore::open(p, options).unwrap(), model);
}

/// `before` with `batches` upserted one after another.
fn applied(before: &Model, batches: &[Vec<StoreRecord>]) -> Model {
    let mut model = before.clone();
    for batch in batches {
        apply_model(&mut model, batch);
    }
    model
}

fn apply_model(model: &mut Model, batch: &[StoreRecord]) {
    let mut winners: BTreeMap<&str, &StoreRecord> = BTreeMap::new();
    for r in batch {
        match winners.get(r.id.as_str()) {
            Some(w) if w.version >= r.version => {}
            _ => {
                winners.insert(&r.id, r);
            }
        }
    }
    for (id, r) in winners {
        match model.get(id) {
            Some((v, _)) if *v >= r.version => {}
            _ => {
                model.insert(id.to_string(), (r.version, r.line.clone()));
            }
        }
    }
}

/// Checks invariants 1 and 2 on the raw file and returns its content as a model.
fn read_file(path: &Path) -> Model {
    let data = fs::read(path).unwrap();
    assert!(data.is_empty() || data.ends_with(b"\n"), "file must be empty or end with a newline");
    let mut out = Model::new();
    if data.is_empty() {
        return out;
    }
    for (n, l) in data[..data.len() - 1].split(|&b| b == b'\n').enumerate() {
        let start = l.iter().position(|&b| b != b' ').unwrap_or_else(|| panic!("line {} is blank: {:?}", n + 1, l));
        let end = l.iter().rposition(|&b| b != b' ').unwrap() + 1;
        let content = &l[start..end];
        assert!(content.starts_with(b"{") && content.ends_with(b"}"), "line {}: {:?}", n + 1, String::from_utf8_lossy(l));
        let (id, v) = extract(content).unwrap_or_else(|| panic!("line {} unparseable", n + 1));
        assert!(out.insert(id.clone(), (v, content.to_vec())).is_none(), "duplicate id {id} at line {}", n + 1);
    }
    out
}

fn check(store: &JsonlStore, model: &Model) {
    let on_disk = read_file(store.path());
    assert_eq!(&on_disk, model);
    assert_eq!(store.len(), model.len());
    for (id, (v, _)) in model {
        assert_eq!(store.version_of(id).unwrap(), Some(*v), "id {id}");
    }
    let st = store.stats();
    assert_eq!(st.file_bytes, fs::metadata(store.path()).unwrap().len());
}

fn dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("data").join("invoices.txt");
    (d, p)
}

/// A store at a fresh path, opened with `options`, and the empty model it starts as.
fn fresh_store(options: StoreOptions) -> (tempfile::TempDir, PathBuf, JsonlStore, Model) {
    let (d, p) = dir();
    let s = JsonlStore::open(&p, options).unwrap();
    (d, p, s, Model::new())
}

#[test]
fn store_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<JsonlStore>();
    send_sync::<StoreError>();
}

#[test]
fn creates_parent_dir_and_sidecar() {
    let (_d, p) = dir();
    let s = JsonlStore::open(&p, opts()).unwrap();
    assert!(p.exists());
    assert!(s.side_dir().join("invoices.txt.manifest").exists());
    assert!(s.side_dir().join("invoices.txt.idx").exists());
    assert!(s.side_dir().join("invoices.txt.lock").exists());
    assert_eq!(s.len(), 0);
    assert!(s.is_empty());
    assert_eq!(fs::read(&p).unwrap(), b"");
}

#[test]
fn upsert_semantics_insert_update_unchanged_stale_duplicates() {
    let (_d, p, mut s, mut model) = fresh_store(opts());
    let b1 = vec![rec("1", 10, 5), rec("2", 10, 5), rec("1", 12, 3), rec("1", 11, 50), rec("abc", 1, 0)];
    let o = upsert_both(&mut s, &mut model, b1.clone());
    assert_eq!((o.inserted, o.updated, o.unchanged, o.stale, o.duplicates_in_batch), (3, 0, 0, 0, 2));
    check(&s, &model);
    assert_eq!(s.version_of("1").unwrap().unwrap().updated_at_ms, 12);

    // Re-upserting the same batch writes nothing at all.
    let before = fs::read(&p).unwrap();
    let gen = s.stats().generation;
    let o = s.upsert(b1.clone()).unwrap();
    assert_eq!((o.inserted, o.updated, o.unchanged, o.stale, o.bytes_written), (0, 0, 3, 0, 0));
    assert_eq!(fs::read(&p).unwrap(), before);
    assert_eq!(s.stats().generation, gen);

    // Stale and equal versions are ignored; a newer shorter version goes in place.
    let b2 = vec![rec("1", 5, 0), rec("2", 10, 99), rec("2", 20, 0)];
    let o = upsert_both(&mut s, &mut model, b2);
    assert_eq!((o.updated, o.stale, o.unchanged, o.duplicates_in_batch), (1, 1, 0, 1));
    check(&s, &model);
    assert_eq!(s.stats().waste_bytes, 0, "in-place update wastes nothing");
    assert_eq!(fs::metadata(&p).unwrap().len(), before.len() as u64, "in place");

    // A longer version is relocated, the old slot blanked into the next line.
    let b3 = vec![rec("1", 30, 200)];
    upsert_both(&mut s, &mut model, b3);
    check(&s, &model);
    assert!(s.stats().waste_bytes > 0);
    assert_eq!(s.get("1").unwrap().unwrap(), model["1"].1);
    let mut seen = Model::new();
    let n = s
        .for_each_line(|l| {
            let (id, v) = extract(l).unwrap();
            seen.insert(id, (v, l.to_vec()));
        })
        .unwrap();
    assert_eq!((n as usize, &seen), (model.len(), &model));
    assert_eq!(s.get("nope").unwrap(), None);

    // Equal timestamps are ordered by sync token.
    let mut r = rec("2", 20, 1);
    r.version.sync_token = 3;
    r.line = line("2", 20, 3, 1);
    s.upsert(vec![r.clone()]).unwrap();
    apply_model(&mut model, &[r]);
    check(&s, &model);
    assert_eq!(s.version_of("2").unwrap().unwrap().sync_token, 3);
}

#[test]
fn group_commit_is_one_commit_with_an_outcome_per_group() {
    let (_d, p, mut s, mut model) = fresh_store(big_mem());
    let first = vec![rec("1", 10, 5), rec("2", 10, 5)];
    upsert_both(&mut s, &mut model, first.clone());
    let generation = s.stats().generation;

    // Group a: one insert, one update that fits in place, and a copy of "9" that loses to
    // group b's newer one. Group b: the winning "9", a stale "1", one more insert. Group c:
    // an older copy of "2" than a's, dropped in the merge.
    let a = vec![rec("3", 1, 0), rec("2", 11, 2), rec("9", 1, 0)];
    let b = vec![rec("9", 2, 0), rec("1", 9, 0), rec("4", 1, 7)];
    let c = vec![rec("2", 10, 5)];
    let outs = s.upsert_groups(&[a.clone().into(), b.clone().into(), c.clone().into()]).unwrap();
    for g in [&a, &b, &c] {
        apply_model(&mut model, g);
    }
    check(&s, &model);
    assert_eq!(s.stats().generation, generation + 1, "three groups, one commit");
    let counts: Vec<_> = outs.iter().map(|o| (o.inserted, o.updated, o.unchanged, o.stale, o.duplicates_in_batch)).collect();
    assert_eq!(counts, vec![(1, 1, 0, 0, 1), (2, 0, 0, 1, 0), (0, 0, 0, 0, 1)]);
    // Each group is charged for its own bytes: a's append and in-place slot, b's two appends.
    let len = |r: &StoreRecord| r.line.len() as u64 + 1;
    assert_eq!(outs[0].bytes_written, len(&a[0]) + len(&first[1]));
    assert_eq!(outs[1].bytes_written, len(&b[0]) + len(&b[2]));
    assert_eq!(outs[2].bytes_written, 0);
    assert_eq!(
        outs.iter().map(|o| o.bytes_written).sum::<u64>(),
        fs::metadata(&p).unwrap().len() - (len(&first[0]) + len(&first[1])) + len(&first[1]),
        "appends plus the one in-place slot"
    );

    // Groups that change nothing commit nothing.
    let outs = s.upsert_groups(&[c.clone().into(), LineBatch::default()]).unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!((outs[0].stale, outs[0].duplicates_in_batch, outs[1]), (1, 0, UpsertOutcome::default()));
    assert_eq!(s.stats().generation, generation + 1);
}

#[test]
fn line_batches_hold_what_was_pushed_and_are_checked_like_records() {
    let recs = vec![rec("1", 1, 3), rec("ü", 2, 0)];
    let mut built = LineBatch::with_capacity(2, 64);
    built.push_with("1", recs[0].version, |buf| buf.extend_from_slice(&recs[0].line));
    built.push("ü", recs[1].version, &recs[1].line);
    assert_eq!(built, LineBatch::from(recs.clone()));
    assert_eq!((built.len(), built.line_bytes()), (2, recs[0].line.len() + recs[1].line.len()));

    let (_d, p) = dir();
    let mut s = JsonlStore::open(&p, opts()).unwrap();
    let mut bad = LineBatch::default();
    bad.push("x", Version::default(), b"{\"id\":\"x\"}\n");
    match s.upsert_groups(&[built.clone(), bad]) {
        Err(StoreError::InvalidRecord { index, id, .. }) => assert_eq!((index, id.as_str()), (2, "x")),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.len(), 0, "a refused record refuses the whole commit");
    s.upsert_groups(&[built]).unwrap();
    let mut model = Model::new();
    apply_model(&mut model, &recs);
    check(&s, &model);
}

#[test]
fn state_persists_across_opens_without_rescan() {
    let (_d, p) = dir();
    let mut model = Model::new();
    {
        let mut s = JsonlStore::open(&p, opts()).unwrap();
        for i in 0..20 {
            let b: Vec<_> = (0..10).map(|k| rec(&(k * 3 + i % 4).to_string(), i, (i as usize * 7 + k as usize) % 30)).collect();
            upsert_both(&mut s, &mut model, b);
        }
        check(&s, &model);
    }
    // Reopening loads the index log; it must agree with the file. Break the data file's
    // extractor-readability to prove no rescan happens: a rescan would fail on a bad line.
    let s = JsonlStore::open(&p, StoreOptions { key_extractor: |_| None, ..opts() }).unwrap();
    check(&s, &model);
}

#[test]
fn the_manifest_alternates_between_two_slots_and_reads_the_one_slot_format() {
    let (_d, p, mut s, mut model) = fresh_store(big_mem());
    let mp = s.side_dir().join("invoices.txt.manifest");
    for v in 1..=3 {
        let b = vec![rec("1", v, 3), rec(&format!("n{v}"), 1, 0)];
        upsert_both(&mut s, &mut model, b);
    }
    let bytes = fs::read(&mp).unwrap();
    assert_eq!(bytes.len(), 2 * crate::format::MANIFEST_LEN, "two slots");
    let slots: Vec<_> = bytes.chunks(crate::format::MANIFEST_LEN).map(|c| crate::format::Manifest::decode(c).unwrap().generation).collect();
    let newest = *slots.iter().max().unwrap();
    assert_eq!(slots.iter().min().copied(), Some(newest - 1), "the other slot holds the commit before");
    assert_eq!(newest, s.stats().generation);
    drop(s);
    let plain_open_reads = JsonlStore::open(&p, big_mem()).unwrap().data_bytes_read;

    // A manifest file of one slot (the format before slots) holding the newest commit opens
    // as it is: no rebuild, no read of the data file, and commits go on in the other slot.
    let i = slots.iter().position(|&g| g == newest).unwrap();
    fs::write(&mp, &bytes[i * crate::format::MANIFEST_LEN..(i + 1) * crate::format::MANIFEST_LEN]).unwrap();
    let mut s = JsonlStore::open(&p, big_mem()).unwrap();
    assert_eq!((s.data_bytes_read, s.stats().generation), (plain_open_reads, newest), "no rebuild");
    check(&s, &model);
    let b = vec![rec("1", 9, 0)];
    upsert_both(&mut s, &mut model, b);
    drop(s);
    let s = JsonlStore::open(&p, big_mem()).unwrap();
    check(&s, &model);
    assert_eq!(s.stats().generation, newest + 1);
}

#[test]
fn upserts_never_read_the_data_file() {
    let (_d, p) = dir();
    let mut s = JsonlStore::open(&p, opts()).unwrap();
    let b: Vec<_> = (0..2000).map(|i| rec(&i.to_string(), 1, 100)).collect();
    s.upsert(b.clone()).unwrap();
    let before = s.data_bytes_read;
    s.upsert(b).unwrap(); // unchanged
    s.upsert((0..500).map(|i| rec(&(i * 3).to_string(), 2, 50)).collect()).unwrap(); // in place
    s.upsert((0..500).map(|i| rec(&(i * 3).to_string(), 3, 500)).collect()).unwrap(); // relocated
    s.upsert((5000..6000).map(|i| rec(&i.to_string(), 1, 10)).collect()).unwrap(); // appended
    assert_eq!(s.data_bytes_read, before);
}

#[test]
fn rejects_invalid_records() {
    let (_d, p) = dir();
    let mut s = JsonlStore::open(&p, opts()).unwrap();
    for bad in [b"{\"a\":\n1}".to_vec(), vec![], b" {}".to_vec()] {
        let e = s.upsert(vec![StoreRecord { id: "1".into(), version: Version::default(), line: bad }]).unwrap_err();
        assert!(matches!(e, StoreError::InvalidRecord { .. }), "{e}");
        assert!(e.to_string().contains("invoices.txt"), "{e}");
    }
    assert_eq!(s.len(), 0);
    drop(s);
    let mut s = JsonlStore::open(&p, StoreOptions { verify_lines: true, ..opts() }).unwrap();
    let mut r = rec("1", 5, 0);
    r.version.updated_at_ms = 6;
    let e = s.upsert(vec![rec("2", 1, 0), r]).unwrap_err();
    assert!(matches!(e, StoreError::InvalidRecord { index: 1, .. }), "{e}");
    assert_eq!(s.upsert(vec![rec("1", 5, 0)]).unwrap().inserted, 1);
}

#[test]
fn rebuild_adopts_foreign_file_and_repairs_it() {
    let (_d, p) = dir();
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    // Duplicates (older later, newer later), blank lines, CRLF, no final newline.
    let mut content = Vec::new();
    content.extend_from_slice(&line("1", 1, 0, 3));
    content.extend_from_slice(b"\n\n \t \n\t");
    content.extend_from_slice(&line("2", 5, 0, 3));
    content.extend_from_slice(b"\r\n");
    content.extend_from_slice(&line("1", 3, 0, 3));
    content.extend_from_slice(b"\n");
    content.extend_from_slice(&line("2", 4, 0, 30));
    content.extend_from_slice(b"\n");
    content.extend_from_slice(&line("x", 4, 0, 0));
    fs::write(&p, &content).unwrap();
    let s = JsonlStore::open(&p, opts()).unwrap();
    let mut model = Model::new();
    model.insert("1".into(), (Version { updated_at_ms: 3, sync_token: 0 }, line("1", 3, 0, 3)));
    model.insert("2".into(), (Version { updated_at_ms: 5, sync_token: 0 }, line("2", 5, 0, 3)));
    model.insert("x".into(), (Version { updated_at_ms: 4, sync_token: 0 }, line("x", 4, 0, 0)));
    // CRLF and tabs were normalised to spaces.
    let raw = fs::read(&p).unwrap();
    assert!(!raw.contains(&b'\r') && !raw.contains(&b'\t'));
    check(&s, &model);
    drop(s);

    // Deleting the sidecar forces a rebuild that reaches the same state.
    fs::remove_dir_all(p.parent().unwrap().join(".qbo_rs")).unwrap();
    let mut s = JsonlStore::open(&p, opts()).unwrap();
    check(&s, &model);
    // A corrupt manifest too; the generation keeps increasing.
    let gen = s.stats().generation;
    fs::write(p.parent().unwrap().join(".qbo_rs/invoices.txt.manifest"), b"garbage").unwrap();
    s.refresh().unwrap();
    check(&s, &model);
    assert!(s.stats().generation > gen);

    // Trailing blank lines and duplicates at the end are cut.
    drop(s);
    let mut c = fs::read(&p).unwrap();
    c.extend_from_slice(&line("x", 1, 0, 0));
    c.extend_from_slice(b"\n   \n\n");
    fs::write(&p, &c).unwrap();
    let s = JsonlStore::open(&p, opts()).unwrap();
    check(&s, &model);
}

#[test]
fn rebuild_refuses_unparseable_lines_naming_them() {
    let (_d, p) = dir();
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut c = line("1", 1, 0, 0);
    c.extend_from_slice(b"\nthis is not json\n");
    fs::write(&p, &c).unwrap();
    let e = JsonlStore::open(&p, opts()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::UnparseableLine { line: 2, .. }), "{msg}");
    assert!(msg.contains("line 2 of") && msg.contains("invoices.txt"), "{msg}");
    assert_eq!(fs::read(&p).unwrap(), c, "nothing changed");
}

#[test]
fn external_append_is_adopted_not_truncated() {
    let (_d, p, mut s, mut model) = fresh_store(opts());
    let b = vec![rec("1", 1, 0), rec("2", 1, 0)];
    upsert_both(&mut s, &mut model, b);
    let mut c = fs::read(&p).unwrap();
    c.extend_from_slice(&line("3", 1, 0, 0));
    c.push(b'\n');
    c.extend_from_slice(&line("1", 9, 0, 0));
    c.push(b'\n');
    fs::write(&p, &c).unwrap(); // same inode, longer
    let b = vec![rec("3", 1, 0), rec("1", 9, 0)];
    apply_model(&mut model, &b);
    s.refresh().unwrap();
    check(&s, &model);
}

#[test]
fn replaced_or_truncated_file_is_rebuilt() {
    let (_d, p) = dir();
    let mut s = JsonlStore::open(&p, opts()).unwrap();
    let b = vec![rec("1", 1, 0), rec("2", 1, 0)];
    s.upsert(b).unwrap();
    // Replace by rename (what editors do) with different content.
    let tmp = p.with_extension("new");
    let mut c = line("7", 2, 0, 0);
    c.push(b'\n');
    fs::write(&tmp, &c).unwrap();
    fs::rename(&tmp, &p).unwrap();
    let mut model = Model::new();
    model.insert("7".into(), (Version { updated_at_ms: 2, sync_token: 0 }, line("7", 2, 0, 0)));
    s.refresh().unwrap();
    check(&s, &model);
    // Truncated in place.
    fs::write(&p, b"").unwrap();
    s.refresh().unwrap();
    check(&s, &Model::new());
}

#[test]
fn compaction_removes_waste_and_keeps_content() {
    let (_d, p, mut s, mut model) = fresh_store(opts());
    for round in 0..10i64 {
        let b: Vec<_> = (0..50).map(|i| rec(&i.to_string(), round, (round as usize) * 10 + i % 7)).collect();
        upsert_both(&mut s, &mut model, b);
    }
    check(&s, &model);
    let st = s.stats();
    assert!(st.waste_bytes > st.file_bytes / 2, "{st:?}");
    let o = s.compact().unwrap();
    assert_eq!(o.bytes_before, st.file_bytes);
    let expected: u64 = model.values().map(|(_, l)| l.len() as u64 + 1).sum();
    assert_eq!(o.bytes_after, expected);
    assert_eq!(s.stats().waste_bytes, 0);
    check(&s, &model);
    // Still usable, and reopening agrees.
    let b = vec![rec("3", 100, 500), rec("999", 1, 1)];
    upsert_both(&mut s, &mut model, b);
    check_reopened(s, &p, opts(), &model);
}

#[test]
fn auto_compaction_triggers_on_thresholds() {
    let (_d, _, mut s, mut model) = fresh_store(StoreOptions { compact_min_waste_bytes: 2000, compact_min_waste_ratio: 0.5, ..opts() });
    let mut compacted = false;
    for round in 0..20i64 {
        let b: Vec<_> = (0..10).map(|i| rec(&i.to_string(), round, round as usize * 5)).collect();
        let out = upsert_both(&mut s, &mut model, b);
        compacted |= out.compacted;
        check(&s, &model);
        let st = s.stats();
        assert!(!(st.waste_bytes >= 2000 && st.waste_bytes * 2 >= st.file_bytes), "{st:?}");
    }
    assert!(compacted);
}

#[test]
fn index_log_is_rewritten_when_bloated() {
    let (_d, p, mut s, mut model) = fresh_store(opts());
    // Few ids updated many times: the log grows by one frame per batch.
    for round in 0..400i64 {
        let b = vec![rec(&(round % 3).to_string(), round, 100)];
        upsert_both(&mut s, &mut model, b);
    }
    assert!(s.stats().index_log_bytes < 8192, "{:?}", s.stats());
    check_reopened(s, &p, opts(), &model);
}

#[test]
fn two_instances_catch_up_incrementally() {
    let (_d, p) = dir();
    let mut a = JsonlStore::open(&p, opts()).unwrap();
    let mut b = JsonlStore::open(&p, opts()).unwrap();
    let mut model = Model::new();
    for i in 0..30i64 {
        let batch = vec![rec(&(i % 7).to_string(), i, (i as usize * 13) % 40), rec(&format!("s{}", i % 5), i, 3)];
        apply_model(&mut model, &batch);
        if i % 2 == 0 { &mut a } else { &mut b }.upsert(batch).unwrap();
        if i == 15 {
            a.compact().unwrap();
        }
    }
    a.refresh().unwrap();
    b.refresh().unwrap();
    check(&a, &model);
    check(&b, &model);
    // `b` caught up with `a`'s commits and compaction from the index log, never reading the
    // data file (but a byte of spot check). `a` read it to compact.
    assert!(b.data_bytes_read < 16, "{}", b.data_bytes_read);
}

#[test]
fn threads_with_separate_instances_converge_to_max_versions() {
    let (_d, p) = dir();
    JsonlStore::open(&p, opts()).unwrap();
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut s = JsonlStore::open(&p, StoreOptions { compact_min_waste_bytes: 4096, ..opts() }).unwrap();
                for round in 0..40i64 {
                    let v = round * 4 + t as i64;
                    let b: Vec<_> = (0..20).map(|i| rec(&i.to_string(), v, ((v as usize) * 7 + i) % 60)).collect();
                    s.upsert(b).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = JsonlStore::open(&p, opts()).unwrap();
    let m = read_file(&p);
    assert_eq!(m.len(), 20);
    for i in 0..20usize {
        let v = 39 * 4 + 3;
        assert_eq!(m[&i.to_string()].0.updated_at_ms, v);
        assert_eq!(m[&i.to_string()].1, line(&i.to_string(), v, 0, ((v as usize) * 7 + i) % 60));
        assert_eq!(s.version_of(&i.to_string()).unwrap().unwrap().updated_at_ms, v);
    }
}

#[test]
fn many_records_use_multi_block_snapshots() {
    let o = StoreOptions { index_memory_entries: 10_000, ..opts() };
    let (_d, p, mut s, mut model) = fresh_store(o);
    for chunk in 0..3u64 {
        let b: Vec<_> = (chunk * 23_000..(chunk + 1) * 23_000).map(|i| rec(&i.to_string(), 1, (i % 5) as usize)).collect();
        upsert_both(&mut s, &mut model, b);
    }
    let b: Vec<_> = (0..1000u64).map(|i| rec(&(i * 97).to_string(), 2, 30)).collect();
    upsert_both(&mut s, &mut model, b);
    s.compact().unwrap(); // snapshot of 69k entries = 2 frames
    check(&s, &model);
    drop(s);
    let s = JsonlStore::open(&p, StoreOptions { key_extractor: |_| None, ..o }).unwrap();
    check(&s, &model);
    assert!(s.stats().index_memory_bytes < 69_000 * 48 + (1 << 20), "{:?}", s.stats());
    drop(s);
    fs::remove_dir_all(p.parent().unwrap().join(".qbo_rs")).unwrap();
    let s = JsonlStore::open(&p, o).unwrap();
    check(&s, &model);
}

#[test]
fn index_memory_is_bounded_and_reopen_loads_no_entry() {
    let o = StoreOptions { index_memory_entries: 20_000, ..opts() };
    let (_d, p, mut s, mut model) = fresh_store(o);
    let mut peak = 0;
    for chunk in 0..100u64 {
        // 2,000 new ids and 100 updates of old ones per batch: 200,000 records in the end.
        let mut b: Vec<_> = (chunk * 2000..(chunk + 1) * 2000).map(|i| rec(&i.to_string(), 1, (i % 3) as usize)).collect();
        b.extend((0..100).map(|i| rec(&(i * 17 % (chunk * 2000 + 1)).to_string(), chunk as i64 + 2, 1)));
        upsert_both(&mut s, &mut model, b);
        peak = peak.max(s.stats().index_memory_bytes);
    }
    assert_eq!(s.len(), 200_000);
    // An all-in-RAM index of 200,000 records takes ≥ 6.4 MB (32 bytes each).
    assert!(peak < 3 << 20, "index memory peaked at {peak} bytes");
    check(&s, &model);
    drop(s);
    // Reopening reads the snapshot's fences and the frames after it, never the data file.
    let s = JsonlStore::open(&p, StoreOptions { key_extractor: |_| None, ..o }).unwrap();
    assert!(s.stats().index_memory_bytes < 3 << 20, "{:?}", s.stats());
    assert!(s.data_bytes_read <= 1, "{}", s.data_bytes_read);
    check(&s, &model);
}

fn idx_file(p: &Path) -> PathBuf {
    p.parent().unwrap().join(".qbo_rs/invoices.txt.idx")
}

/// A store with several snapshot blocks and frames after the snapshot.
fn store_with_snapshot_and_frames(p: &Path) -> Model {
    let mut s = JsonlStore::open(p, StoreOptions { index_memory_entries: 400, ..opts() }).unwrap();
    let mut model = Model::new();
    for k in 0..10i64 {
        let b: Vec<_> = (0..90).map(|i| rec(&(k * 50 + i).to_string(), k, (i % 7) as usize)).chain([rec("s-1", k, 3)]).collect();
        upsert_both(&mut s, &mut model, b);
    }
    let st = s.stats();
    let run_len = run::RunHeader::decode(&fs::read(idx_file(p)).unwrap()).unwrap().frames_start();
    assert!(st.index_log_bytes > run_len, "frames after the snapshot: {st:?}");
    assert!(run_len > 3 * 4096, "several blocks");
    check(&s, &model);
    model
}

#[test]
fn torn_missing_stale_or_corrupt_index_log_is_detected_and_rebuilt() {
    fn damage(name: &str, ix: &Path, b: &[u8]) {
        let h = run::RunHeader::decode(b).unwrap();
        let mut b = b.to_vec();
        match name {
            "missing" => return fs::remove_file(ix).unwrap(),
            "empty" => b.clear(),
            "torn in the blocks" => b.truncate(b.len() / 3),
            "last frame lost" => b.truncate(b.len() - 1),
            "header checksum" => b[20] ^= 0x20,
            "block checksum" => b[run::HEADER_LEN as usize + 4096 + 100] ^= 0x20,
            "fence checksum" => b[(run::HEADER_LEN + h.blocks_len + 20) as usize] ^= 0x20,
            "old format" => b[..8].copy_from_slice(b"QBOJIDX1"),
            _ => unreachable!(),
        }
        fs::write(ix, b).unwrap();
    }
    let cases = ["missing", "empty", "torn in the blocks", "last frame lost", "header checksum", "block checksum", "fence checksum", "old format"];
    for name in cases {
        let (_d, p) = dir();
        let model = store_with_snapshot_and_frames(&p);
        let gen = JsonlStore::open(&p, opts()).unwrap().stats().generation;
        let ix = idx_file(&p);
        let before = fs::read(&ix).unwrap();
        damage(name, &ix, &before);
        let s = JsonlStore::open(&p, opts()).unwrap();
        assert!(s.stats().generation > gen, "{name}: not rebuilt");
        assert!(s.data_bytes_read >= fs::metadata(&p).unwrap().len(), "{name}: rebuilt from the data file");
        check(&s, &model);
        drop(s);
        // The rebuilt log is used as is by the next open.
        let s = JsonlStore::open(&p, StoreOptions { key_extractor: |_| None, ..opts() }).unwrap();
        check(&s, &model);
    }
}

#[test]
fn stale_index_log_from_an_older_epoch_is_rebuilt() {
    let (_d, p) = dir();
    let mut model = store_with_snapshot_and_frames(&p);
    let ix = idx_file(&p);
    let old = fs::read(&ix).unwrap();
    {
        let mut s = JsonlStore::open(&p, opts()).unwrap();
        let b: Vec<_> = (0..30).map(|i| rec(&(1000 + i).to_string(), 1, 2)).collect();
        upsert_both(&mut s, &mut model, b);
        s.compact().unwrap(); // new epoch
    }
    fs::write(&ix, &old).unwrap(); // an old copy restored (e.g. from a backup)
    let s = JsonlStore::open(&p, opts()).unwrap();
    check(&s, &model);
}

#[cfg(unix)]
#[test]
fn a_block_corrupted_after_open_is_detected_and_the_upsert_heals() {
    let (_d, p) = dir();
    let mut model = store_with_snapshot_and_frames(&p);
    let mut s = JsonlStore::open(&p, opts()).unwrap();
    let ix = idx_file(&p);
    let mut b = fs::read(&ix).unwrap();
    let at = run::HEADER_LEN as usize + 50;
    b[at] ^= 0x20;
    // Same inode, same length: only the checksum can tell.
    std::os::unix::fs::FileExt::write_all_at(&fs::OpenOptions::new().write(true).open(&ix).unwrap(), &b[at..at + 1], at as u64).unwrap();
    let e = s.version_of("3").unwrap_err();
    assert!(matches!(e, StoreError::CorruptIndex { .. }), "{e}");
    assert!(e.to_string().contains("delete the .qbo_rs directory"), "{e}");
    let batch = vec![rec("3", 100, 1), rec("99999", 1, 1)];
    upsert_both(&mut s, &mut model, batch);
    check(&s, &model);
}

// ------------------------------------------------------------------ crash injection

/// Builds a store with a known state, fsync on so every step is counted.
fn prepared(p: &Path) -> (JsonlStore, Model) {
    let o = StoreOptions { fsync: true, ..opts() };
    let mut s = JsonlStore::open(p, o).unwrap();
    let mut model = Model::new();
    let b: Vec<_> = (0..8).map(|i| rec(&i.to_string(), 1, 20)).chain([rec("k", 1, 5)]).collect();
    upsert_both(&mut s, &mut model, b);
    (s, model)
}

/// Appends, in-place shrink, in-place same size, relocations, a stale and an unchanged record.
fn mixed_batch() -> Vec<StoreRecord> {
    vec![
        rec("100", 1, 10),
        rec("1", 2, 5),
        rec("2", 2, 20),
        rec("3", 2, 200),
        rec("7", 2, 100),
        rec("k", 0, 1),
        rec("4", 1, 20),
        rec("new", 5, 0),
        rec("100", 2, 11),
    ]
}

fn crash_loop(op: impl Fn(&mut JsonlStore) -> Result<(), StoreError>, after_model: impl Fn(&Model) -> Model) {
    crash_loop_with(prepared, op, after_model)
}

fn crash_loop_with(
    prepared: impl Fn(&Path) -> (JsonlStore, Model),
    op: impl Fn(&mut JsonlStore) -> Result<(), StoreError>,
    after_model: impl Fn(&Model) -> Model,
) {
    // Count the steps of a clean run.
    let (_d, p) = dir();
    let (mut s, _) = prepared(&p);
    let start = s.io_steps();
    op(&mut s).unwrap();
    let steps = s.io_steps() - start;
    assert!(steps >= 5, "{steps}");
    let mut saw_before = false;
    let mut saw_after = false;
    for n in 1..=steps {
        for reuse_instance in [false, true] {
            let (_d, p) = dir();
            let (mut s, before) = prepared(&p);
            let after = after_model(&before);
            s.fail_after_steps(Some(n));
            let r = op(&mut s);
            assert!(matches!(r, Err(StoreError::InjectedFault(_))), "step {n}: {r:?}");
            s.fail_after_steps(None);
            let s = if reuse_instance {
                s.refresh().unwrap();
                s
            } else {
                drop(s);
                JsonlStore::open(&p, opts()).unwrap()
            };
            let on_disk = read_file(&p);
            if on_disk == before {
                saw_before = true;
                check(&s, &before);
            } else {
                assert_eq!(on_disk, after, "step {n} of {steps}: neither before nor after");
                saw_after = true;
                check(&s, &after);
            }
            // And the store keeps working.
            let mut s = s;
            op(&mut s).unwrap();
            check_reopened(s, &p, opts(), &after);
        }
    }
    assert!(saw_before && saw_after);
}

#[test]
fn crash_at_every_step_of_a_mixed_batch_is_atomic() {
    crash_loop(|s| s.upsert(mixed_batch()).map(|_| ()), |before| applied(before, &[mixed_batch()]));
}

#[test]
fn crash_at_every_step_of_a_group_commit_is_atomic_for_all_groups() {
    let mixed = mixed_batch();
    let (head, tail) = mixed.split_at(4);
    let groups = || vec![head.to_vec(), tail.to_vec(), vec![rec("g", 3, 9)]];
    crash_loop(|s| s.upsert_groups(&groups().into_iter().map(LineBatch::from).collect::<Vec<_>>()).map(|_| ()), |before| applied(before, &groups()));
}

#[test]
fn crash_at_every_step_of_compaction_is_safe() {
    crash_loop(
        |s| {
            s.upsert(mixed_batch())?;
            s.compact().map(|_| ())
        },
        |before| applied(before, &[mixed_batch()]),
    );
}

#[test]
fn crash_at_every_step_of_an_index_log_rewrite_is_safe() {
    // A log of many one-record frames, one upsert short of being rewritten as a snapshot.
    let prepare = |p: &Path| {
        let mut s = JsonlStore::open(p, big_mem()).unwrap();
        let mut model = Model::new();
        let mut v = 1;
        while s.stats().index_log_bytes < 3900 {
            // Small frames near the end, so the log stops between 3900 and 4096 bytes.
            let n = if s.stats().index_log_bytes < 3500 { 10 } else { 1 };
            let b: Vec<_> = (0..n).map(|i| rec(&i.to_string(), v, 0)).collect();
            upsert_both(&mut s, &mut model, b);
            v += 1;
        }
        drop(s);
        let s = JsonlStore::open(p, StoreOptions { fsync: true, ..big_mem() }).unwrap();
        (s, model)
    };
    let batch = || vec![rec("1", 1000, 3), rec("3", 1, 0), rec("30", 1, 0), rec("31", 1, 0), rec("32", 1, 0)];
    {
        let (_d, p) = dir();
        let (mut s, _) = prepare(&p);
        let (gen, log) = (s.stats().generation, s.stats().index_log_bytes);
        s.upsert(batch()).unwrap();
        assert_eq!(s.stats().generation, gen + 2, "the upsert was followed by a log rewrite");
        assert!(s.stats().index_log_bytes < log, "{log} {:?}", s.stats());
    }
    crash_loop_with(prepare, |s| s.upsert(batch()).map(|_| ()), |before| applied(before, &[batch()]));
}

#[test]
fn crash_at_every_step_of_a_rebuild_is_safe() {
    let mut content = Vec::new();
    for (id, v, pad) in [("1", 1, 3), ("2", 5, 3), ("1", 3, 30), ("2", 4, 1), ("3", 1, 0)] {
        content.extend_from_slice(&line(id, v, 0, pad));
        content.extend_from_slice(b"\n \n");
    }
    content.extend_from_slice(&line("3", 0, 0, 0));
    let expected = {
        let mut m = Model::new();
        m.insert("1".into(), (Version { updated_at_ms: 3, sync_token: 0 }, line("1", 3, 0, 30)));
        m.insert("2".into(), (Version { updated_at_ms: 5, sync_token: 0 }, line("2", 5, 0, 3)));
        m.insert("3".into(), (Version { updated_at_ms: 1, sync_token: 0 }, line("3", 1, 0, 0)));
        m
    };
    let o = StoreOptions { fsync: true, ..opts() };
    let mut n = 1;
    loop {
        let (_d, p) = dir();
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &content).unwrap();
        let r = JsonlStore::open_failing_after(&p, o, n);
        let done = match r {
            Ok(_) => true,
            Err(StoreError::InjectedFault(_)) => false,
            Err(e) => panic!("{e}"),
        };
        let s = JsonlStore::open(&p, opts()).unwrap();
        check(&s, &expected);
        if done {
            break;
        }
        n += 1;
    }
    assert!(n > 3, "{n}");
}

// ------------------------------------------------------------------ model-based property test

#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<(u8, i64, u64, usize)>),
    Reopen,
    Compact,
    DeleteSidecar,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => prop::collection::vec((0u8..8, 0i64..6, 0u64..3, 0usize..60), 1..8).prop_map(Step::Batch),
        1 => Just(Step::Reopen),
        1 => Just(Step::Compact),
        1 => Just(Step::DeleteSidecar),
    ]
}

fn pool_id(k: u8) -> String {
    match k {
        0..=4 => k.to_string(),
        5 => "007".into(),
        6 => "A-1".into(),
        _ => "ünï".into(),
    }
}

/// Records of the id pool from (pool key, updated_at_ms, sync_token, padding) tuples.
fn pool_batch(recs: Vec<(u8, i64, u64, usize)>) -> Vec<StoreRecord> {
    recs.into_iter()
        .map(|(k, v, t, pad)| {
            let id = pool_id(k);
            let line = line(&id, v, t, pad);
            StoreRecord { id, version: Version { updated_at_ms: v, sync_token: t }, line }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn model_based(steps in prop::collection::vec(step_strategy(), 1..25), small_compact in any::<bool>(), split in 0usize..8) {
        let (_d, p) = dir();
        let o = StoreOptions {
            compact_min_waste_bytes: if small_compact { 200 } else { 64 << 20 },
            ..opts()
        };
        let mut s = JsonlStore::open(&p, o).unwrap();
        let mut model = Model::new();
        for step in steps {
            match step {
                Step::Batch(recs) => {
                    let batch = pool_batch(recs);
                    // Sometimes as two groups of one commit: the sums must be the same.
                    let (a, b) = batch.split_at(split.min(batch.len()));
                    let outs = s.upsert_groups(&[a.to_vec().into(), b.to_vec().into()]).unwrap();
                    let sum = |f: fn(&UpsertOutcome) -> usize| outs.iter().map(f).sum::<usize>();
                    let distinct = batch.iter().map(|r| &r.id).collect::<std::collections::BTreeSet<_>>().len();
                    prop_assert_eq!(sum(|o| o.inserted + o.updated + o.unchanged + o.stale), distinct);
                    prop_assert_eq!(sum(|o| o.duplicates_in_batch), batch.len() - distinct);
                    apply_model(&mut model, &batch);
                }
                Step::Reopen => {
                    drop(s);
                    s = JsonlStore::open(&p, o).unwrap();
                }
                Step::Compact => {
                    s.compact().unwrap();
                }
                Step::DeleteSidecar => {
                    drop(s);
                    fs::remove_dir_all(p.parent().unwrap().join(".qbo_rs")).unwrap();
                    s = JsonlStore::open(&p, o).unwrap();
                }
            }
            check(&s, &model);
            let st = s.stats();
            let live: u64 = model.values().map(|(_, l)| l.len() as u64 + 1).sum();
            prop_assert!(st.file_bytes >= live + st.waste_bytes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Random batches, each interrupted at a random I/O step (or not), with auto-compaction and
    /// index-log rewrites in play: after reopening, the file is exactly the model before or
    /// after that batch, and the model follows whichever it was.
    #[test]
    fn model_based_with_crashes(
        steps in prop::collection::vec(
            (prop::collection::vec((0u8..8, 0i64..8, 0u64..3, 0usize..80), 1..8), 0u64..40, any::<bool>()),
            1..20,
        )
    ) {
        let (_d, p) = dir();
        let o = StoreOptions { compact_min_waste_bytes: 300, ..opts() };
        let mut s = JsonlStore::open(&p, o).unwrap();
        let mut model = Model::new();
        for (recs, fail_at, compact) in steps {
            let batch = pool_batch(recs);
            let mut after = model.clone();
            apply_model(&mut after, &batch);
            s.fail_after_steps((fail_at > 0).then_some(fail_at));
            let r = s.upsert(batch).and_then(|_| if compact { s.compact().map(|_| ()) } else { Ok(()) });
            s.fail_after_steps(None);
            if r.is_err() {
                prop_assert!(matches!(r, Err(StoreError::InjectedFault(_))), "{:?}", r);
                drop(s);
                s = JsonlStore::open(&p, o).unwrap();
                let on_disk = read_file(&p);
                prop_assert!(on_disk == model || on_disk == after, "torn batch");
                model = on_disk;
            } else {
                model = after;
            }
            check(&s, &model);
        }
    }
}
