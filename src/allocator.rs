//! The engine's allocator: jemalloc with one arena, handing unused memory back to the OS within
//! 100 ms. Python keeps its own allocator; only the Rust side of the wheel uses this one.
//!
//! With glibc's malloc the peak RSS of `qbo-rs backfill invoice` grew with the length of the run
//! although the records held stayed bounded (`benches/bench.py`'s memory section, 50-day windows,
//! an 8 MB buffer budget: 59 / 67 / 75 MB at 200k / 1M / 2M invoices): `mallinfo2` at the peak
//! showed 23 → 29 → 32 MB free but resident, the holes multi-megabyte page bodies leave among
//! longer-lived small allocations, which glibc does not give back. jemalloc returns pages left
//! unused for `dirty_decay_ms`, so what stays resident follows what the run does now, not how
//! long it has run. One arena rather than jemalloc's 4 per core: a backfill has a handful of
//! busy threads, and each arena keeps its own recently freed pages (8 arenas: 81 / 89 / 92 MB;
//! one: 54 / 56 / 59 MB, at the same speed). Purging at once (`dirty_decay_ms:0`) saved a few
//! more MB but ran ~1.7× slower at 200k.
//!
//! The options are compiled in below; `_RJEM_MALLOC_CONF` in the environment overrides them
//! (jemalloc's `MALLOC_CONF` under the wheel's symbol prefix).

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it starts (a C `const char *`, NUL-terminated).
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 46] = b"narenas:1,dirty_decay_ms:100,muzzy_decay_ms:0\0";
