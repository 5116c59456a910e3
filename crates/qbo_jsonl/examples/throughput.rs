//! Throughput figures for the store (not a test: numbers depend on the disk).
//!
//! ```text
//! cargo run --release -p qbo_jsonl --example throughput -- [DIR] [RECORDS] [LINE_BYTES] [BATCH_BYTES] [fsync|nofsync]
//! ```
//! Defaults: a temp dir, 1,000,000 records of 2,048 bytes in 16 MiB batches, fsync on.
//! Writes RECORDS × LINE_BYTES (2 GB by default) and deletes it at the end.

use std::time::Instant;

use qbo_jsonl::{JsonlStore, StoreOptions, StoreRecord, Version};

/// Finds `"id":"…"` and `"v":N` without a JSON parser (only used if the store must rebuild).
fn extract(line: &[u8]) -> Option<(String, Version)> {
    let s = std::str::from_utf8(line).ok()?;
    let i = s.find("\"id\":\"")? + 6;
    let id = &s[i..i + s[i..].find('"')?];
    let j = s.find("\"v\":")? + 4;
    let v: i64 = s[j..j + s[j..].find(|c: char| !c.is_ascii_digit())?].parse().ok()?;
    Some((id.to_string(), Version { updated_at_ms: v, sync_token: 0 }))
}

fn make(id: u64, v: i64, len: usize) -> StoreRecord {
    let mut line = format!(r#"{{"id":"{id}","v":{v},"payload":""#).into_bytes();
    line.resize(len - 2, b'x');
    line.extend_from_slice(b"\"}");
    StoreRecord { id: id.to_string(), version: Version { updated_at_ms: v, sync_token: 0 }, line }
}

#[cfg(unix)]
fn write_at(f: &std::fs::File, b: &[u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, b, off)
}

#[cfg(not(unix))]
fn write_at(mut f: &std::fs::File, b: &[u8], off: u64) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    f.seek(std::io::SeekFrom::Start(off))?;
    f.write_all(b)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tmp = tempfile::tempdir()?;
    let dir = args.first().map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let records: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let line_len: usize = args.get(2).map_or(Ok(2048), |s| s.parse())?;
    let batch_bytes: usize = args.get(3).map_or(Ok(16 << 20), |s| s.parse())?;
    let fsync = args.get(4).is_none_or(|s| s != "nofsync");
    let per_batch = (batch_bytes / (line_len + 1)).max(1) as u64;
    let path = dir.join("bench_invoices.txt");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(dir.join(".qbo_rs"));
    let opts = StoreOptions { fsync, ..StoreOptions::new(extract) };
    println!(
        "{records} records x {line_len} B in batches of {per_batch} ({:.1} MB), fsync={fsync}, dir={}",
        mb(per_batch * (line_len as u64 + 1)),
        dir.display()
    );

    // Baseline: the same bytes with plain positioned writes + fdatasync per batch, no store.
    {
        let raw = dir.join("bench_baseline.bin");
        let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&raw)?;
        let chunk = vec![b'x'; (per_batch * (line_len as u64 + 1)) as usize];
        let total = records * (line_len as u64 + 1);
        let t = Instant::now();
        let mut off = 0u64;
        while off < total {
            let n = (chunk.len() as u64).min(total - off) as usize;
            write_at(&f, &chunk[..n], off)?;
            if fsync {
                f.sync_data()?;
            }
            off += n as u64;
        }
        let s = t.elapsed().as_secs_f64();
        println!("baseline (raw write + fdatasync per batch, no store): {:.2} s  {:.0} MB/s", s, mb(total) / s);
        drop(f);
        std::fs::remove_file(&raw)?;
    }

    let mut store = JsonlStore::open(&path, opts)?;
    let mut write_time = 0.0;
    let mut build_time = 0.0;
    let mut written = 0u64;
    let mut id = 0u64;
    while id < records {
        let t = Instant::now();
        let n = per_batch.min(records - id);
        let batch: Vec<StoreRecord> = (id..id + n).map(|i| make(i, 1, line_len)).collect();
        build_time += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = store.upsert(batch)?;
        write_time += t.elapsed().as_secs_f64();
        written += out.bytes_written;
        id += n;
    }
    println!(
        "fresh append:   {:.2} s  {:.0} MB/s  {:.0} records/s  ({:.0} MB; building the batches took another {:.2} s, not counted)",
        write_time,
        mb(written) / write_time,
        records as f64 / write_time,
        mb(written),
        build_time
    );

    let n = 10_000.min(records);
    let start = records / 2;
    let same: Vec<StoreRecord> = (start..start + n).map(|i| make(i, 1, line_len)).collect();
    let t = Instant::now();
    let out = store.upsert(same)?;
    println!(
        "re-upsert {n} already-stored records: {:.1} ms, {} bytes written (unchanged={})",
        t.elapsed().as_secs_f64() * 1e3,
        out.bytes_written,
        out.unchanged
    );

    let newer: Vec<StoreRecord> = (start..start + n).map(|i| make(i, 2, line_len)).collect();
    let t = Instant::now();
    let out = store.upsert(newer)?;
    println!("update {n} records in place (same length): {:.1} ms, {:.1} MB written", t.elapsed().as_secs_f64() * 1e3, mb(out.bytes_written));

    let longer: Vec<StoreRecord> = (start..start + n).map(|i| make(i, 3, line_len + 100)).collect();
    let t = Instant::now();
    let out = store.upsert(longer)?;
    println!("update {n} records that grew (relocated): {:.1} ms, {:.1} MB written", t.elapsed().as_secs_f64() * 1e3, mb(out.bytes_written));

    let st = store.stats();
    drop(store);
    let t = Instant::now();
    let store = JsonlStore::open(&path, opts)?;
    println!(
        "reopen (load index log, {:.1} MB): {:.0} ms; index memory {:.1} MB = {:.1} B/record",
        mb(st.index_log_bytes),
        t.elapsed().as_secs_f64() * 1e3,
        mb(store.stats().index_memory_bytes as u64),
        store.stats().index_memory_bytes as f64 / store.len() as f64
    );
    drop(store);

    std::fs::remove_dir_all(dir.join(".qbo_rs"))?;
    let t = Instant::now();
    let mut store = JsonlStore::open(&path, opts)?;
    println!("rebuild by scanning the data file ({:.0} MB): {:.2} s", mb(st.file_bytes), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let c = store.compact()?;
    println!("compact: {:.2} s, {:.0} MB -> {:.0} MB", t.elapsed().as_secs_f64(), mb(c.bytes_before), mb(c.bytes_after));
    drop(store);
    std::fs::remove_file(&path)?;
    std::fs::remove_dir_all(dir.join(".qbo_rs"))?;
    Ok(())
}
