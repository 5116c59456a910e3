"""make bench: prints figures, asserts nothing about speed (targets are shown beside them).

1. Throughput: backfill -> data/invoices.txt against the emulator with no throttle and no
   latency, qbo-rs beside the plain-Python equivalent (benches/plain_python.py), same
   windows, same page size, same line format, measured in the same run: three rounds, the
   clients taking turns, medians compared. Each runs as its own process, so CPU seconds and
   peak RSS come from wait4().
2. Pacing: the emulator throttles at 500/min with 10 in flight and 200 ms latency; qbo-rs
   runs for a fixed time; achieved requests/minute as a share of 500, and the 429 share.
3. Peak RSS of the qbo-rs process for larger backfills (flat, < 150 MB target).

Usage: bench.py [--smoke]   (--smoke: tiny sizes so `make test` keeps this runnable)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
QBO = [sys.executable, "-m", "qbo_rs"]
START, END = "2015-01-01", "2026-01-01"
PLAIN = "plain Python (requests + json)"


class Emulator:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            QBO + ["emulator", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        # `export QBO_…='…'` lines, then the emulator closes its stdout: read to the end.
        lines = self.proc.stdout.read().splitlines()
        self.env: Dict[str, str] = dict(shlex.split(line)[1].split("=", 1) for line in lines)

    def stats(self) -> Dict[str, Any]:
        with urllib.request.urlopen(self.env["QBO_BASE_URL"] + "/_emulator/stats", timeout=10) as r:
            stats: Dict[str, Any] = json.load(r)
            return stats

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def unthrottled_emulator(invoices: int, customers: int, items: int, seed: int) -> Emulator:
    """An emulator that answers as fast as it can: no throttle, no cap on requests in flight."""
    return Emulator(
        *("--invoices", str(invoices), "--customers", str(customers), "--items", str(items), "--seed", str(seed)),
        *("--throttle-per-minute", "0", "--max-in-flight", "0"),
    )


def backfill_invoices(chunk_days: int, page_size: int, *options: str) -> List[str]:
    """The `qbo-rs backfill invoice` command over the bench's whole range, without a progress bar."""
    window = ["--start", START, "--end", END, "--chunk-days", str(chunk_days), "--page-size", str(page_size)]
    return QBO + ["backfill", "invoice", *window, "--no-progress", *options]


def run_measured(
    cmd: List[str], env: Dict[str, str], timeout: Optional[float] = None
) -> Tuple[int, float, float, int, str]:
    """Runs cmd; returns (exit code, wall s, cpu s, peak RSS KiB, stderr tail)."""
    os.sync()  # no run pays for the previous one's dirty pages (each writes ~0.5 GB)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.send_signal(signal.SIGINT)
                deadline = None
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        err.seek(0)
        tail = err.read()[-2000:]
    code = os.waitstatus_to_exitcode(status)
    return code, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, tail


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def throughput(invoices: int, work: Path, rounds: int = 3) -> None:
    print(
        f"\n## 1. Throughput: {invoices:,} invoices, no throttle, no latency, page size 1000, 365-day windows, {rounds} round(s)"
    )
    emu = unthrottled_emulator(invoices, customers=200, items=100, seed=1)
    clients: Dict[str, List[Tuple[int, float, float, int]]] = {}
    try:
        env = dict(os.environ, **emu.env)
        # The clients take turns, round after round: whoever runs first on a fresh machine pays for
        # the kernel finding half a gigabyte of page cache, so no client always goes first.
        for _round in range(rounds):
            for label, fsync in (("qbo-rs (fsync per commit)", True), ("qbo-rs (--no-fsync)", False)):
                data = work / f"rs-{fsync}"
                env["QBO_TOKEN_STORE"] = str(work / f"tokens-{fsync}.json")
                cmd = backfill_invoices(
                    365,
                    1000,
                    "--data-dir",
                    str(data),
                    "--requests-per-minute",
                    "1000000",
                    *([] if fsync else ["--no-fsync"]),
                )
                code, wall, cpu, rss, tail = run_measured(cmd, env)
                assert code == 0, tail
                clients.setdefault(label, []).append((count_lines(data / "invoices.txt"), wall, cpu, rss))
                shutil.rmtree(data)
            out = work / "plain.txt"
            code, wall, cpu, rss, tail = run_measured(
                [sys.executable, str(HERE / "plain_python.py"), str(out), START, END, "365", "1000"], env
            )
            assert code == 0, tail
            clients.setdefault(PLAIN, []).append((count_lines(out), wall, cpu, rss))
            out.unlink()
    finally:
        emu.stop()
    print(
        f"{'client':34} {'records':>9} {'wall s':>8} {'records/s':>11} {'CPU s/M rec':>12} {'peak RSS MB':>12}   records/s of each round"
    )
    median_rate = {}
    for label, runs in clients.items():
        rates = [n / wall for n, wall, _, _ in runs]
        median_rate[label] = statistics.median(rates)
        n, wall, cpu, rss = sorted(runs, key=lambda run: run[0] / run[1])[len(runs) // 2]
        each = " / ".join(f"{rate:,.0f}" for rate in rates)
        print(f"{label:34} {n:>9,} {wall:>8.2f} {n / wall:>11,.0f} {cpu / n * 1e6:>12.1f} {rss / 1024:>12.1f}   {each}")
    base = median_rate[PLAIN]
    for label, rate in median_rate.items():
        if label != PLAIN:
            print(f"speed-up {label}: {rate / base:.1f}x the plain-Python records/s (medians; target >= 10x)")


def pacing(seconds: float, work: Path) -> None:
    print(f"\n## 2. Pacing: emulator throttle 500/min, 10 in flight, 200 ms latency; qbo-rs runs {seconds:.0f} s")
    emu = Emulator(
        "--invoices",
        "60000",
        "--customers",
        "10",
        "--items",
        "10",
        "--seed",
        "2",
        "--throttle-per-minute",
        "500",
        "--max-in-flight",
        "10",
        "--latency-ms",
        "200",
    )
    try:
        env = dict(os.environ, **emu.env, QBO_TOKEN_STORE=str(work / "tokens-pacing.json"))
        cmd = backfill_invoices(30, 20, "--data-dir", str(work / "pacing"), "--max-concurrent-windows", "10")
        before = emu.stats()
        code, wall, _, _, tail = run_measured(cmd, env, timeout=seconds)
        after = emu.stats()
    finally:
        emu.stop()
    requests = after["query_requests"] - before["query_requests"]
    throttled = after["throttled"] - before["throttled"]
    per_minute = requests / wall * 60
    print(
        f"requests sent: {requests} in {wall:.1f} s = {per_minute:.1f}/min = {per_minute / 500:.1%} of the 500/min limit (target >= 95%)"
    )
    print(f"answered 429: {throttled} = {throttled / max(requests, 1):.2%} of requests (target <= 1%)")
    print(
        f"max in flight seen by the emulator: {after.get('max_in_flight')}; busiest 60 s window: {after.get('max_requests_in_60s')}"
    )


def memory(sizes: List[int], work: Path) -> None:
    print("\n## 3. Peak RSS of the qbo-rs process (target: flat, < 150 MB)")
    print(f"{'invoices':>10} {'records':>10} {'wall s':>8} {'peak RSS MB':>12}")
    for n in sizes:
        emu = unthrottled_emulator(n, customers=100, items=50, seed=3)
        try:
            env = dict(os.environ, **emu.env, QBO_TOKEN_STORE=str(work / f"tokens-mem-{n}.json"))
            data = work / f"mem-{n}"
            cmd = backfill_invoices(50, 1000, "--data-dir", str(data), "--requests-per-minute", "1000000")
            code, wall, _, rss, tail = run_measured(cmd, env)
            assert code == 0, tail
            print(f"{n:>10,} {count_lines(data / 'invoices.txt'):>10,} {wall:>8.1f} {rss / 1024:>12.1f}")
            shutil.rmtree(data)
        finally:
            emu.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for make test")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qbo-bench-"))
    try:
        if args.smoke:
            throughput(3000, work, rounds=1)
            pacing(8, work)
            memory([3000], work)
        else:
            throughput(200_000, work)
            pacing(120, work)
            memory([200_000, 1_000_000, 2_000_000], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
