//! The export step: a staged window streamed into the sinks, once, whatever repeats it.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{stage_io, ExportReceipt, StagePaths, StagedWindow};
use crate::backfill::{conclude, sink_reports, write_alerts, WindowReport, WindowStatus};
use crate::budget::MemoryBudget;
use crate::entity::Entity;
use crate::error::Error;
use crate::paginate::FetchedRecord;
use crate::sink::{open_sinks, Sink, SinkOptions};
use crate::window::Window;
use crate::writer::WindowWriter;

/// Writes the stage whose manifest is `manifest` into the sinks of `options` and checks rows
/// staged against rows each sink now holds. After a successful write it keeps a receipt and
/// removes the stage, unless `keep`. Run again once the stage is gone, it returns the
/// receipt's report and writes nothing (it refuses if the receipt lacks one of the sinks).
/// Returns the entity with the report.
pub async fn export_window(manifest: &Path, options: &SinkOptions, keep: bool) -> Result<(Entity, WindowReport), Error> {
    let paths = StagePaths::of_manifest(manifest)?;
    let _lock = paths.lock().await?;
    if !paths.manifest.exists() {
        if let Some(receipt) = ExportReceipt::load(&paths.receipt)? {
            let entity = receipt.staged.entity()?;
            let wanted = options.kind.sink_names();
            if !receipt.covers(wanted.iter().copied()) {
                return Err(Error::config(format!(
                    "window {} was written to {} (receipt {}) and its stage removed; to write it to {} too, run its fetch step again",
                    receipt.staged.counts.window.label,
                    receipt.written.sinks.iter().map(|s| s.sink.as_str()).collect::<Vec<_>>().join(" and "),
                    paths.receipt.display(),
                    wanted.join(" and "),
                )));
            }
            tracing::info!(target: "qbo_rs", "window {}: already written at {} (receipt {}); nothing to write again",
                receipt.staged.counts.window.label, receipt.exported_at.format("%Y-%m-%dT%H:%M:%SZ"), paths.receipt.display());
            return Ok((entity, receipt.report()));
        }
    }
    let staged = StagedWindow::load(&paths.manifest)?;
    let entity = staged.entity()?;
    let sinks = open_sinks(entity, options).await?;
    let report = export_staged(&paths.manifest, &staged, &sinks).await?;
    if report.status == WindowStatus::Ok && !keep {
        // The receipt first: from then on a repeated export answers from it, and a crash
        // before the removal leaves a stage that the next export removes the same way.
        paths.write_receipt(&ExportReceipt::new(&staged, &report))?;
        if let Err(e) = paths.remove_stage() {
            tracing::warn!(target: "qbo_rs", "window {} was written but its stage could not be removed: {e}", report.label);
        }
    }
    Ok((entity, report))
}

/// The fields of a staged line the sinks need; the payload stays the exact bytes QBO sent.
#[derive(Deserialize)]
struct StagedLine<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    last_updated_utc: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sync_token: std::borrow::Cow<'a, str>,
    page_number: u32,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

fn decode_chunk(chunk: Bytes, records_file: &Path, first_line: u64) -> Result<Vec<FetchedRecord>, Error> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut number = first_line;
    while at < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[at..]).map_or(chunk.len(), |i| at + i);
        let line = &chunk[at..end];
        number += 1;
        let bad = |why: String| Error::Integrity(format!("{} line {number}: {why}; re-run the fetch step", records_file.display()));
        let parsed: StagedLine<'_> = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let last_updated_utc = DateTime::parse_from_rfc3339(&parsed.last_updated_utc).map_err(|e| bad(format!("last_updated_utc: {e}")))?.with_timezone(&Utc);
        let payload = chunk.slice_ref(parsed.payload.get().as_bytes());
        records.push(FetchedRecord {
            id: parsed.id.into_owned(),
            sync_token: parsed.sync_token.into_owned(),
            last_updated_utc,
            // A staged line is written into the window it was staged for: its key routes nothing.
            key_ms: last_updated_utc.timestamp_millis(),
            page_number: parsed.page_number,
            payload,
        });
        at = end + 1;
    }
    Ok(records)
}

/// Hands every line `reader` holds to `writer`, about `chunk_bytes` at a time, counting them
/// into `lines` (which numbers them in errors).
pub(super) async fn push_lines<R: BufRead>(
    reader: &mut R,
    records_path: &Path,
    writer: &WindowWriter<'_>,
    chunk_bytes: usize,
    lines: &mut u64,
) -> Result<(), Error> {
    loop {
        // Room for the chunk before reading it. A window that must wait hands its buffered
        // lines to a write first, so it never waits holding room that only it can give back.
        let charge = match writer.budget.try_reserve(chunk_bytes as u64) {
            Some(charge) => charge,
            None => {
                writer.flush(&mut *writer.state.lock().await).await?;
                writer.budget.reserve(chunk_bytes as u64).await
            }
        };
        // Read whole lines up to about a batch, then hand them over without copying payloads.
        let mut buf = Vec::with_capacity(chunk_bytes + 64 * 1024);
        let first_line = *lines;
        while buf.len() < chunk_bytes {
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| stage_io("read", records_path, e))?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                return Err(Error::Integrity(format!("{} ends with a torn line: re-run the fetch step", records_path.display())));
            }
            *lines += 1;
        }
        if buf.is_empty() {
            return Ok(());
        }
        let records = decode_chunk(Bytes::from(buf), records_path, first_line)?;
        writer.push_charged(records, charge).await?;
    }
}

/// Writes a staged window into `sinks` and checks rows staged vs rows each sink now holds.
/// `staged` is the manifest at `manifest`, as [`StagedWindow::load`] read it. The stage is
/// left as it is (see [`export_window`]).
pub async fn export_staged(manifest: &Path, staged: &StagedWindow, sinks: &[Arc<dyn Sink>]) -> Result<WindowReport, Error> {
    let records_path = manifest.with_file_name(&staged.records_file);
    let size = fs::metadata(&records_path)
        .map(|m| m.len())
        .map_err(|e| Error::Integrity(format!("the staged records {} are missing ({e}): re-run the fetch step", records_path.display())))?;
    if size != staged.bytes {
        return Err(Error::Integrity(format!(
            "the staged records {} hold {size} bytes, the manifest says {}: re-run the fetch step",
            records_path.display(),
            staged.bytes
        )));
    }
    let lines = StagedLines {
        entity: staged.entity()?,
        realm_id: &staged.realm_id,
        page_size: staged.page_size,
        ingested_at: staged.counts.ingested_at,
        records_path: &records_path,
        segments: &[Segment { offset: 0, bytes: staged.bytes }],
        lines: staged.counts.lines,
    };
    // One window, read a batch at a time, each write awaited: nothing to bound.
    Ok(write_staged_lines(lines, staged.fetch_report(), sinks, MemoryBudget::unlimited()).await)
}

/// Where a staged window's lines lie in a records file: the whole file, or the parts of a
/// share's file its batches went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Segment {
    pub offset: u64,
    pub bytes: u64,
}

/// A staged window's lines and the lineage they are written with.
pub(super) struct StagedLines<'a> {
    pub entity: Entity,
    pub realm_id: &'a str,
    pub page_size: u32,
    pub ingested_at: DateTime<Utc>,
    pub records_path: &'a Path,
    pub segments: &'a [Segment],
    /// Lines the segments hold, as the fetch counted them.
    pub lines: u64,
}

/// Writes the lines of the window `fetched` reports (its fetch) into `sinks`, checks rows
/// staged vs rows each sink now holds, and returns the window's report. Windows written at
/// the same time share `budget`: what they read and have not yet written stays within it.
pub(super) async fn write_staged_lines(staged: StagedLines<'_>, fetched: WindowReport, sinks: &[Arc<dyn Sink>], budget: Arc<MemoryBudget>) -> WindowReport {
    let started = Instant::now();
    let path = staged.records_path;
    let window = Window { start: fetched.start, end: fetched.end, label: fetched.label.clone() };
    let writer = WindowWriter::new(sinks, staged.entity, staged.realm_id, &window, staged.page_size, staged.ingested_at, None, budget);
    let chunk_bytes = sinks.iter().map(|s| s.batch_bytes()).max().unwrap_or(2 << 20);
    let result = async {
        let mut lines = 0u64;
        if !staged.segments.iter().all(|s| s.bytes == 0) {
            let mut file = File::open(path).map_err(|e| stage_io("open", path, e))?;
            for segment in staged.segments {
                file.seek(SeekFrom::Start(segment.offset)).map_err(|e| stage_io("read", path, e))?;
                let mut reader = BufReader::with_capacity(256 << 10, (&file).take(segment.bytes));
                push_lines(&mut reader, path, &writer, chunk_bytes, &mut lines).await?;
            }
        }
        if lines != staged.lines {
            return Err(Error::Integrity(format!(
                "{} holds {lines} lines for window {}, the manifest says {}: re-run the fetch step",
                path.display(),
                window.label,
                staged.lines
            )));
        }
        let mut state = writer.state.lock().await;
        writer.finish(&mut state).await
    }
    .await;
    if result.is_err() {
        // Let a batch already being written finish, so the report counts what was committed.
        let mut state = writer.state.lock().await;
        let _ = writer.wait_in_flight(&mut state).await;
    }
    let state = writer.state.into_inner();
    let mut report = WindowReport { sinks: sink_reports(sinks, &state), rows_emitted: state.emitted, duration: started.elapsed(), ..fetched };
    if let Err(e) = result {
        report.status = WindowStatus::Failed;
        tracing::error!(target: "qbo_rs", "window {} failed: {e}", report.label);
        report.error = Some(e.to_string());
        return report;
    }
    for sink in &report.sinks {
        let o = sink.outcome;
        tracing::info!(target: "qbo_rs", "window {}: {} staged row(s) -> {}: {} inserted, {} updated, {} unchanged, {} older than stored",
            report.label, report.rows_emitted, sink.target, o.inserted, o.updated, o.unchanged, o.stale);
    }
    let alerts = write_alerts(&report);
    conclude(&mut report, alerts);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::record::{raw_line, LinePrefix};
    use crate::sink::WriteBatch;
    use crate::window::Window;
    use chrono::TimeZone;

    fn record(id: &str, payload: &str) -> FetchedRecord {
        FetchedRecord {
            id: id.into(),
            sync_token: "3".into(),
            last_updated_utc: Utc.with_ymd_and_hms(2025, 2, 3, 4, 5, 6).unwrap() + chrono::Duration::milliseconds(789),
            key_ms: 0,
            page_number: 7,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }
    }

    #[test]
    fn staged_lines_decode_to_the_records_with_payload_bytes_untouched() {
        let window = Window::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(), "invoice_backfill");
        let records = vec![record("1", r#"{"Id":"1","Name":"caf\u00e9 \"q\"","Line":[{"Amount":1.50}]}"#), record("22", r#"{"Id":"22",  "Spaced" : true }"#)];
        let batch = WriteBatch { entity: Entity::Invoice, realm_id: "9130".into(), window, page_size: 100, ingested_at: Utc::now(), records };
        let prefix = LinePrefix::new(&batch);
        let mut chunk = Vec::new();
        for r in &batch.records {
            raw_line(&batch, r, &prefix, &mut chunk);
            chunk.push(b'\n');
        }
        let decoded = decode_chunk(Bytes::from(chunk), Path::new("x.jsonl"), 0).unwrap();
        assert_eq!(decoded.len(), 2);
        for (got, want) in decoded.iter().zip(&batch.records) {
            assert_eq!(got.id, want.id);
            assert_eq!(got.sync_token, want.sync_token);
            assert_eq!(got.last_updated_utc, want.last_updated_utc);
            assert_eq!(got.page_number, want.page_number);
            assert_eq!(got.payload, want.payload, "the payload is QBO's bytes, not a re-serialisation");
        }
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        let err = decode_chunk(Bytes::from_static(b"{\"id\":\"1\"}\n"), Path::new("w.jsonl"), 41).unwrap_err();
        assert!(err.to_string().contains("w.jsonl line 42"), "{err}");
    }
}
