//! The `qbo-rs` command line. It lives in the wheel (called from `qbo_rs.cli:main`, and
//! from `python -m qbo_rs`) but is plain Rust: clap for arguments, indicatif for the
//! progress bar, tracing for the log lines the runbook greps.

mod progress;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use qbo_core::backfill::{run_backfill_until, BackfillRequest};
use qbo_core::limiter::LimiterScope;
use qbo_core::read_plan::ReadPlan;
use qbo_core::sink::{open_sinks, SinkConfig};
use qbo_core::stop::StopSignal;
use qbo_core::sync::{run_sync, SyncRequest};
use qbo_core::{ClientConfig, Credentials, Entity, Error};
use tokio::runtime::Runtime;

#[derive(Parser, Debug)]
#[command(name = "qbo-rs", version, about = "Backfill QuickBooks Online invoices, customers and items into a RAW layer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Backfill one entity over [--start, --end) into data/<entity>s.txt.
    Backfill(Box<BackfillArgs>),
    /// Print the windows a backfill would run.
    Plan(PlanArgs),
    /// Count first, read nothing: the records, streams, requests and minutes a backfill needs
    /// (it spends only COUNT requests).
    Estimate(Box<EstimateArgs>),
    /// Serve the bundled QBO emulator until stopped (Ctrl-C, or SIGTERM). Once it listens it
    /// prints `export QBO_…=…` lines for a client and closes its standard output, so
    /// `eval "$(qbo-rs emulator &)"` sets up the shell and returns while it serves on.
    Emulator(EmulatorArgs),
    /// Bring one entity's RAW layer up to date: the changes since the last run (or backfill),
    /// then the deletions QuickBooks reports. On an empty sink it is a backfill.
    Sync(Box<SyncArgs>),
}

/// A range cut in windows: `[--start, --end)` every `--chunk-days`.
#[derive(Args, Debug)]
struct RangeArgs {
    /// First instant, inclusive: YYYY-MM-DD (midnight UTC) or an ISO datetime.
    #[arg(long)]
    start: String,
    /// Last instant, exclusive: YYYY-MM-DD (midnight UTC) or an ISO datetime.
    #[arg(long)]
    end: String,
    #[arg(long, default_value_t = qbo_core::backfill::DEFAULT_CHUNK_DAYS)]
    chunk_days: u32,
}

impl RangeArgs {
    fn bounds(&self) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), Error> {
        Ok((qbo_core::time::parse_user_instant("--start", &self.start)?, qbo_core::time::parse_user_instant("--end", &self.end)?))
    }
}

/// What to read: one entity over a range, planned in windows.
#[derive(Args, Debug)]
struct ReadArgs {
    /// invoice, customer or item (any case).
    entity: String,
    #[command(flatten)]
    range: RangeArgs,
    /// Records per request, 1..1000 (QuickBooks' maximum, the default: every request is metered).
    #[arg(long, default_value_t = qbo_core::backfill::DEFAULT_PAGE_SIZE)]
    page_size: u32,
    /// LastUpdatedTime (default), CreateTime or TxnDate.
    #[arg(long, default_value = "LastUpdatedTime")]
    filter_field: String,
    /// Only the window with this label (repeatable); labels come from `qbo-rs plan`.
    #[arg(long = "window")]
    windows: Vec<String>,
    /// Streams read at once (consecutive windows read as one keyset pass each).
    #[arg(long, default_value_t = qbo_core::backfill::DEFAULT_CONCURRENT_WINDOWS)]
    max_concurrent_windows: usize,
}

impl ReadArgs {
    fn request(&self) -> Result<BackfillRequest, Error> {
        let entity: Entity = self.entity.parse()?;
        let (start, end) = self.range.bounds()?;
        let mut request = BackfillRequest::new(entity, start, end);
        request.chunk_days = self.range.chunk_days;
        request.page_size = self.page_size;
        request.filter_field = self.filter_field.parse()?;
        request.max_concurrent_windows = self.max_concurrent_windows;
        request.only_labels = (!self.windows.is_empty()).then(|| self.windows.clone());
        Ok(request)
    }
}

/// How to talk to QuickBooks: the realm's pace, retries, the shared budget, the token store.
#[derive(Args, Debug)]
struct ClientArgs {
    /// Requests per minute for this realm (Intuit allows 500).
    #[arg(long, default_value_t = qbo_core::limiter::DEFAULT_REQUESTS_PER_MINUTE)]
    requests_per_minute: u32,
    #[arg(long, default_value_t = qbo_core::limiter::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: u32,
    #[arg(long, default_value_t = qbo_core::retry::DEFAULT_MAX_RETRIES)]
    max_retries: u32,
    /// Directory of the request budget every process on this machine shares per realm
    /// (default: $QBO_LIMITER_DIR, else $XDG_RUNTIME_DIR/qbo_rs, else /tmp/qbo_rs-<uid>).
    #[arg(long, conflicts_with = "process_limiter")]
    limiter_dir: Option<PathBuf>,
    /// Pace this process alone instead of sharing the realm's budget with other processes.
    #[arg(long)]
    process_limiter: bool,
    /// Where rotated refresh tokens are kept (default: $QBO_TOKEN_STORE, else
    /// ~/.local/state/qbo_rs/tokens-<realm>.json for Intuit, tokens-<realm>-<tag>.json for any
    /// other token endpoint).
    #[arg(long)]
    token_store: Option<PathBuf>,
}

impl ClientArgs {
    /// The client, with credentials from the QBO_* environment.
    fn client(&self) -> Result<qbo_core::QboClient, Error> {
        let creds = Credentials::from_lookup(|k| std::env::var(k).ok())?;
        let mut config = ClientConfig::default();
        config.pacing.requests_per_minute = self.requests_per_minute;
        config.pacing.max_in_flight = self.max_in_flight;
        config.retry.max_retries = self.max_retries;
        config.limiter_scope = match (self.process_limiter, &self.limiter_dir) {
            (true, _) => LimiterScope::Process,
            (false, Some(dir)) => LimiterScope::Machine(dir.clone()),
            (false, None) => LimiterScope::machine_default(),
        };
        config.token_store = self.token_store.clone().or_else(|| qbo_core::token_store::default_path(&creds.realm_id, &creds.token_endpoint()));
        qbo_core::QboClient::new(creds, config)
    }
}

#[derive(Args, Debug)]
struct BackfillArgs {
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Where the records go and what a run may spend: shared by `backfill` and `sync`.
#[derive(Args, Debug)]
struct OutputArgs {
    /// Where to write: txt, postgres or both.
    #[arg(long, default_value = "txt")]
    sink: String,
    /// PostgreSQL DSN (postgresql://user:pass@host:5432/db?sslmode=prefer); without it the
    /// POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD variables.
    #[arg(long)]
    dsn: Option<String>,
    /// Schema of the RAW tables.
    #[arg(long, default_value_t = SinkConfig::default().pg_schema)]
    pg_schema: String,
    /// Prefix of the RAW tables (<prefix>invoices, <prefix>customers, <prefix>items).
    #[arg(long, default_value_t = SinkConfig::default().pg_table_prefix)]
    pg_table_prefix: String,
    #[arg(long, default_value_os_t = SinkConfig::default().data_dir)]
    data_dir: PathBuf,
    /// Refuse (exit 2, nothing read or written) a run whose estimate needs more requests
    /// than this (see `qbo-rs estimate`).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Megabytes of fetched records held in memory at once, across the windows.
    #[arg(long, default_value_t = qbo_core::budget::DEFAULT_MAX_BUFFER_MB)]
    max_buffer_mb: u32,
    /// Skip fsync (a killed process still never tears a line; a power cut might).
    #[arg(long)]
    no_fsync: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl OutputArgs {
    fn sinks(&self) -> Result<qbo_core::sink::SinkOptions, Error> {
        SinkConfig {
            kind: self.sink.parse()?,
            data_dir: self.data_dir.clone(),
            fsync: !self.no_fsync,
            dsn: self.dsn.clone(),
            pg_schema: self.pg_schema.clone(),
            pg_table_prefix: self.pg_table_prefix.clone(),
            postgres: None,
        }
        .resolve()
    }

    /// What a run that writes needs, ready: the client (credentials from the QBO_* environment),
    /// a progress bar on a terminal (none with --no-progress) with the log lines above it, the
    /// sinks opened (so a wrong password fails before any request) and a stop signal.
    async fn session(&self, client: &ClientArgs, entity: Entity) -> Result<Session, Error> {
        let sink_options = self.sinks()?;
        let client = client.client()?;
        let show_bar = !self.no_progress && std::io::stderr().is_terminal();
        let counted = client.clone();
        let bar = progress::Bar::new(show_bar, Arc::new(move || counted.request_counts().api_calls()));
        progress::install_logging(bar.clone());
        let sinks = open_sinks(entity, &sink_options).await?;
        Ok(Session { client, bar, sinks, stop: StopSignal::new() })
    }
}

/// See [`OutputArgs::session`].
struct Session {
    client: qbo_core::QboClient,
    bar: progress::Bar,
    sinks: Vec<Arc<dyn qbo_core::sink::Sink>>,
    stop: StopSignal,
}

/// Bring the RAW layer up to date: what changed since the last run, and what was deleted.
#[derive(Args, Debug)]
struct SyncArgs {
    /// invoice, customer or item (any case).
    entity: String,
    /// How far back a sync of an empty sink reads: YYYY-MM-DD or an ISO datetime.
    #[arg(long, default_value = qbo_core::sync::DEFAULT_START)]
    start: String,
    /// Minutes before the last sync's end that are read again (clock differences, late records).
    #[arg(long, default_value_t = qbo_core::sync::DEFAULT_OVERLAP_MINUTES)]
    overlap_minutes: u32,
    /// Days per window of the read (default: one window for the whole range).
    #[arg(long, default_value_t = qbo_core::sync::DEFAULT_SYNC_CHUNK_DAYS)]
    chunk_days: u32,
    /// Records per request, 1..1000.
    #[arg(long, default_value_t = qbo_core::backfill::DEFAULT_PAGE_SIZE)]
    page_size: u32,
    #[arg(long, default_value_t = qbo_core::backfill::DEFAULT_CONCURRENT_WINDOWS)]
    max_concurrent_windows: usize,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    out: OutputArgs,
}

impl SyncArgs {
    fn request(&self) -> Result<SyncRequest, Error> {
        let mut request = SyncRequest::new(self.entity.parse()?);
        request.read.start = qbo_core::time::parse_user_instant("--start", &self.start)?;
        request.read.chunk_days = self.chunk_days;
        request.read.page_size = self.page_size;
        request.read.max_concurrent_windows = self.max_concurrent_windows;
        request.read.max_buffer_bytes = u64::from(self.out.max_buffer_mb) << 20;
        request.read.max_requests = self.out.max_requests;
        request.overlap = chrono::Duration::minutes(self.overlap_minutes.into());
        request.read.plan()?;
        Ok(request)
    }
}

#[derive(Args, Debug)]
struct EstimateArgs {
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the estimate as one JSON object (records, windows, streams, requests, minutes, ...).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    range: RangeArgs,
    #[arg(long, default_value = "invoice")]
    entity: String,
}

#[derive(Args, Debug)]
struct EmulatorArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 2000)]
    invoices: usize,
    #[arg(long, default_value_t = 300)]
    customers: usize,
    #[arg(long, default_value_t = 150)]
    items: usize,
    /// Calls per realm per sliding minute before 429s, a batch item counting as one (QBO: 500; 0 = no limit).
    #[arg(long, default_value_t = 500)]
    throttle_per_minute: u32,
    /// Concurrent query requests per realm before 429s (QBO: 10; 0 = no limit).
    #[arg(long, default_value_t = 10)]
    max_in_flight: u32,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Probability per page request of an edit that attacks offset paging.
    #[arg(long, default_value_t = 0.0)]
    edit_rate: f64,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_ttl: u64,
    /// Rotate the refresh token once it is this many seconds old (0 = every refresh).
    #[arg(long, default_value_t = 86400)]
    rotate_after: u64,
    /// Objects one Change Data Capture answer holds at most (QBO: 1000; 0 = no cap).
    #[arg(long, default_value_t = qbo_emulator::Knobs::default().cdc_max_objects)]
    cdc_max_objects: u32,
    /// How many days back CDC's changedSince may reach (QBO: 30; 0 = no limit).
    #[arg(long, default_value_t = qbo_emulator::Knobs::default().cdc_max_lookback_days.unwrap_or(0))]
    cdc_max_lookback_days: u32,
}

/// Exit codes: 0 done, 1 a run failed (see the log), 2 bad arguments or configuration, or a
/// backfill over `--max-requests` (refused before any page).
pub fn run(args: Vec<String>, runtime: &Runtime) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once("qbo-rs".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Plan(a) => plan(a),
        Command::Backfill(a) => runtime.block_on(backfill(*a)),
        Command::Estimate(a) => runtime.block_on(estimate(*a)),
        Command::Emulator(a) => runtime.block_on(emulator(a)),
        Command::Sync(a) => runtime.block_on(sync(*a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qbo-rs: {}", one_line(&e.to_string()));
            if matches!(e, Error::Config(_) | Error::OverBudget { .. }) {
                2
            } else {
                1
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn plan(a: PlanArgs) -> Result<i32, Error> {
    let entity: Entity = a.entity.parse()?;
    let (start, end) = a.range.bounds()?;
    let windows = qbo_core::plan_windows(start, end, a.range.chunk_days, &entity.label_prefix())?;
    let mut out = std::io::stdout().lock();
    for w in &windows {
        let _ = writeln!(out, "{}\t{}\t{}", w.label, w.start_text(), w.end_text());
    }
    eprintln!("{} window(s) of up to {} day(s), [start, end) in UTC", windows.len(), a.range.chunk_days);
    Ok(0)
}

async fn estimate(a: EstimateArgs) -> Result<i32, Error> {
    let request = a.read.request()?;
    let windows = request.plan()?;
    let client = a.client.client()?;
    let plan = ReadPlan::make(&client, request.entity, request.filter_field, request.page_size, windows, request.max_concurrent_windows).await;
    if let Some((_, error)) = plan.uncounted.first() {
        return Err(Error::Sink(format!("counting failed: {error}")));
    }
    let estimate = plan.estimate(client.requests_per_minute());
    let mut out = std::io::stdout().lock();
    if a.json {
        let _ = writeln!(out, "{}", serde_json::to_string(&estimate).map_err(|e| Error::Sink(e.to_string()))?);
    } else {
        let _ = writeln!(
            out,
            "{} {}: {} record(s) in {} window(s), read as {} stream(s): {} request(s) ({} count(s) spent, {} page(s), {} closing count(s)), ~{:.1} min at {} requests/min",
            estimate.entity,
            a.read.range.start,
            estimate.records,
            estimate.windows,
            estimate.streams.len(),
            estimate.requests,
            estimate.count_requests,
            estimate.page_requests,
            estimate.closing_counts,
            estimate.minutes,
            client.requests_per_minute()
        );
        for s in &estimate.streams {
            let _ = writeln!(
                out,
                "  stream {} .. {}: {} record(s), {} window(s)",
                qbo_core::time::format_utc(s.start),
                qbo_core::time::format_utc(s.end),
                s.records,
                s.windows
            );
        }
    }
    Ok(0)
}

async fn backfill(a: BackfillArgs) -> Result<i32, Error> {
    let mut request = a.read.request()?;
    let entity = request.entity;
    request.max_buffer_bytes = u64::from(a.out.max_buffer_mb) << 20;
    request.max_requests = a.out.max_requests;
    request.plan()?;
    let Session { client, bar, sinks, stop } = a.out.session(&a.client, entity).await?;
    let report = match interruptible(run_backfill_until(&client, sinks, &request, bar.observer(), &stop), &bar, &stop).await? {
        Ended::Done(report) => report,
        Ended::Interrupted(report) => {
            if let Some(report) = report {
                eprintln!(
                    "qbo-rs: interrupted: {} row(s) committed in this run ({} fetched); re-run the same command to finish",
                    report.rows_written(),
                    report.total_rows()
                );
            }
            return Ok(130);
        }
    };
    bar.finish();
    let r = report.requests;
    eprintln!(
        "{} {} row(s) in {} window(s) ({} committed), {:.1} s, {} request(s) ({} page, {} count, {} retry; {} token){}",
        entity.plural(),
        report.total_rows(),
        report.windows.len(),
        report.rows_written(),
        report.duration.as_secs_f64(),
        r.api_calls(),
        r.pages,
        r.counts,
        r.retries,
        r.tokens,
        report.estimate.as_ref().map(|e| format!(", estimated {}", e.requests)).unwrap_or_default()
    );
    Ok(exit_code(&report))
}

async fn sync(a: SyncArgs) -> Result<i32, Error> {
    let request = a.request()?;
    let entity = request.entity();
    let Session { client, bar, sinks, stop } = a.out.session(&a.client, entity).await?;
    let report = match interruptible(run_sync(&client, sinks, &request, bar.observer(), &stop), &bar, &stop).await? {
        Ended::Done(report) => report,
        Ended::Interrupted(report) => {
            if report.is_some() {
                eprintln!("qbo-rs: interrupted: committed batches are kept and the next sync starts from the same place");
            }
            return Ok(130);
        }
    };
    bar.finish();
    let (rows, r) = (report.rows(), report.requests);
    eprintln!(
        "{} sync ({}{}): {} inserted, {} updated, {} unchanged, {} deleted ({} found, {} still alive); {:.1} s, {} request(s) ({} page, {} count, {} cdc, {} retry; {} token)",
        entity.plural(),
        report.mode.name(),
        match &report.mode {
            qbo_core::sync::SyncMode::Reconciliation { reason } => format!(": {reason}"),
            _ => String::new(),
        },
        rows.inserted,
        rows.updated,
        rows.unchanged + rows.stale,
        report.marked_deleted(),
        report.deletions_found,
        report.deletions_refuted,
        report.duration.as_secs_f64(),
        r.api_calls(),
        r.pages,
        r.counts,
        r.cdc,
        r.retries,
        r.tokens
    );
    Ok(exit_code(&report.read))
}

/// 0 when every window is complete; else each failed window is named and the code is 1.
fn exit_code(report: &qbo_core::backfill::BackfillReport) -> i32 {
    let failed = report.failed();
    for w in &failed {
        eprintln!("qbo-rs: window {} failed: {}", w.label, one_line(w.error.as_deref().unwrap_or("unknown error")));
    }
    i32::from(!failed.is_empty())
}

/// How a run interrupted by Ctrl-C ended.
enum Ended<T> {
    Done(T),
    /// Stopped by Ctrl-C: the report of what is committed, if the run got to finish cleanly
    /// (`None`: quit at once, or stopped while counting; either was said already).
    Interrupted(Option<T>),
}

/// Runs `run` until it ends or Ctrl-C. The first Ctrl-C raises `stop`: no new request, the
/// batches being written land, and the run reports what is committed. A second one quits at once.
async fn interruptible<T>(run: impl std::future::Future<Output = Result<T, Error>>, bar: &progress::Bar, stop: &StopSignal) -> Result<Ended<T>, Error> {
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r.map(Ended::Done),
        _ = tokio::signal::ctrl_c() => {
            bar.println("qbo-rs: stopping: no new request; the batches being written are finishing (Ctrl-C again to quit now)");
            stop.stop();
            let ended = tokio::select! {
                r = &mut run => match r {
                    Ok(report) => Ended::Interrupted(Some(report)),
                    Err(Error::Cancelled) => {
                        eprintln!("qbo-rs: interrupted while counting: nothing was written");
                        Ended::Interrupted(None)
                    }
                    Err(e) => return Err(e),
                },
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("qbo-rs: interrupted; committed batches are kept, re-run the same command to finish");
                    Ended::Interrupted(None)
                }
            };
            bar.abandon();
            Ok(ended)
        }
    }
}

/// Prints, once the emulator listens, what a client needs as lines a shell can `eval`:
/// `export QBO_…='…'` (an unexported variable would not reach `qbo-rs backfill`), plus
/// `QBO_EMULATOR_PID` to stop it with. Then it lets go of its standard output, so a command
/// substitution that started it in the background (`eval "$(qbo-rs emulator &)"`) ends there
/// instead of waiting for the server to exit.
fn print_client_env(emu: &qbo_emulator::Emulator) {
    let pid = std::process::id().to_string();
    let vars = [
        ("QBO_BASE_URL", emu.base_url()),
        ("QBO_TOKEN_URL", emu.token_url()),
        ("QBO_CLIENT_ID", emu.client_id().to_string()),
        ("QBO_CLIENT_SECRET", emu.client_secret().to_string()),
        ("QBO_REFRESH_TOKEN", emu.initial_refresh_token().to_string()),
        ("QBO_REALM_ID", emu.realm_id().to_string()),
        ("QBO_EMULATOR_PID", pid),
    ];
    let mut out = std::io::stdout().lock();
    for (name, value) in vars {
        let _ = writeln!(out, "export {name}={}", shell_quoted(&value));
    }
    let _ = out.flush();
    drop(out);
    // /dev/null takes the place of the standard output: nothing else is printed there, and fd 1
    // stays a valid descriptor for anything (Python's `sys.stdout`) that writes to it later.
    if let Err(e) = std::fs::OpenOptions::new().write(true).open("/dev/null").and_then(|null| rustix::stdio::dup2_stdout(&null).map_err(Into::into)) {
        eprintln!("qbo-rs emulator: could not release the standard output ({e}): a command substitution reading it waits until the emulator stops");
    }
}

/// `value` in single quotes, for a POSIX shell (a `'` inside becomes `'\''`).
fn shell_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

async fn emulator(a: EmulatorArgs) -> Result<i32, Error> {
    let mut config = qbo_emulator::EmulatorConfig {
        host: a.host,
        port: a.port,
        seed: a.seed,
        invoices: a.invoices,
        customers: a.customers,
        items: a.items,
        ..Default::default()
    };
    config.knobs.throttle_per_minute = Some(a.throttle_per_minute);
    config.knobs.max_in_flight = Some(a.max_in_flight);
    config.knobs.latency_ms = a.latency_ms;
    config.knobs.fault_rate = a.fault_rate;
    config.knobs.edit_rate = a.edit_rate;
    config.knobs.access_token_ttl_secs = a.access_token_ttl;
    config.knobs.refresh_rotate_after_secs = a.rotate_after;
    config.knobs.cdc_max_objects = a.cdc_max_objects;
    config.knobs.cdc_max_lookback_days = (a.cdc_max_lookback_days > 0).then_some(a.cdc_max_lookback_days);
    let emu = qbo_emulator::Emulator::start(config).await.map_err(|e| Error::config(format!("emulator: {e}")))?;
    print_client_env(&emu);
    eprintln!("qbo-rs emulator: serving {} (Ctrl-C or kill {} to stop)", emu.base_url(), std::process::id());
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| Error::config(format!("cannot listen for SIGTERM: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emu.shutdown().await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::shell_quoted;

    #[test]
    fn a_quoted_value_is_one_word_to_a_shell_whatever_it_holds() {
        assert_eq!(shell_quoted("http://127.0.0.1:8765"), "'http://127.0.0.1:8765'");
        assert_eq!(shell_quoted("it's $HOME"), r"'it'\''s $HOME'");
    }
}
