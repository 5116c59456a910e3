//! Throughput of the emulator: generate N invoices, then read every one of them in 1000-row
//! pages over loopback with reqwest, the way a backfill client does.
//!
//! ```text
//! cargo run --release -p qbo_emulator --example bench_emulator -- [INVOICES] [CONCURRENCY]
//! ```
//! Defaults: 200000 invoices, 1 connection. Prints generation time, in-process page assembly
//! rate (the emulator's own cost, no network) and end-to-end MB/s and rows/s over HTTP.

use std::time::Instant;

use qbo_emulator::{Emulator, EmulatorConfig, Knobs};

const PAGE: usize = 1000;

fn tail_max_results(body: &[u8]) -> usize {
    // The page ends with `"maxResults":N},"time":"..."}`; read N without parsing 2 MB of JSON.
    let s = &body[body.len().saturating_sub(120)..];
    let key = b"\"maxResults\":";
    match s.windows(key.len()).rposition(|w| w == key) {
        Some(p) => s[p + key.len()..].iter().take_while(|c| c.is_ascii_digit()).fold(0, |a, c| a * 10 + (c - b'0') as usize),
        None => 0,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let invoices: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let conc: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let t0 = Instant::now();
        let emu = Emulator::start(EmulatorConfig { invoices, knobs: Knobs::unthrottled(), ..Default::default() }).await.expect("start");
        let gen = t0.elapsed();
        println!("generated {invoices} invoices in {:.2} s ({:.0} invoices/s)", gen.as_secs_f64(), invoices as f64 / gen.as_secs_f64());

        // In-process: the emulator's own cost to assemble every page (no sockets).
        let t1 = Instant::now();
        let (rows, bytes) = emu.bench_assemble_pages("Invoice", PAGE);
        let d = t1.elapsed().as_secs_f64();
        println!(
            "in-process page assembly: {rows} rows, {:.1} MB in {:.3} s = {:.0} MB/s, {:.0} rows/s",
            bytes as f64 / 1e6,
            d,
            bytes as f64 / 1e6 / d,
            rows as f64 / d
        );

        let http = reqwest::Client::builder().no_gzip().build().expect("client");
        let tok = emu.issue_access_token();
        let url = emu.query_url();
        let pages = invoices.div_ceil(PAGE) + 1;
        let t2 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..conc {
            let (http, tok, url) = (http.clone(), tok.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let (mut rows, mut bytes, mut reqs) = (0usize, 0usize, 0usize);
                let mut p = w;
                while p < pages {
                    let q = format!(
                        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2014-01-01T00:00:00Z' \
                         ORDERBY MetaData.LastUpdatedTime STARTPOSITION {} MAXRESULTS {PAGE}",
                        p * PAGE + 1
                    );
                    let body = http
                        .post(&url)
                        .bearer_auth(&tok)
                        .header("Content-Type", "application/text")
                        .body(q)
                        .send()
                        .await
                        .expect("send")
                        .bytes()
                        .await
                        .expect("body");
                    reqs += 1;
                    bytes += body.len();
                    rows += tail_max_results(&body);
                    p += conc;
                }
                (rows, bytes, reqs)
            }));
        }
        let (mut rows, mut bytes, mut reqs) = (0, 0, 0);
        for t in tasks {
            let (r, b, q) = t.await.expect("task");
            rows += r;
            bytes += b;
            reqs += q;
        }
        let d = t2.elapsed().as_secs_f64();
        assert_eq!(rows, invoices, "every invoice read once");
        println!(
            "HTTP loopback ({conc} connection(s)): {reqs} requests, {rows} rows, {:.1} MB in {:.3} s = {:.0} MB/s, {:.0} rows/s, {:.1} ms/page",
            bytes as f64 / 1e6,
            d,
            bytes as f64 / 1e6 / d,
            rows as f64 / d,
            d * 1000.0 / reqs as f64
        );
        let st = emu.stats();
        println!("server stats: query_requests={} rows_served={} bytes_served={}", st.query_requests, st.rows_served, st.bytes_served);
        emu.shutdown().await;
    });
}
