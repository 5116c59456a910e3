#!/usr/bin/env python
"""Mage's overhead: qb_invoice_backfill through Mage beside plain `qbo-rs backfill`.

Same emulator data (a separate process, unthrottled, so pacing is not measured), same windows
(chunk_days), same page size, TXT sink, fresh output folders. Each client runs in its own process;
wall time, CPU seconds and peak RSS come from wait4(). Plain qbo-rs runs once with its default 4
concurrent windows and once with 1 (Mage's headless runner executes windows one after another),
so  overhead per window = (Mage wall - Mage start-up - plain sequential wall) / windows, where
start-up is a Mage run of a single empty window. Windows are read in shares (a fetch and an
export block run each, as many as the data deserves, see mage_project/README.md), so the overhead
is a few block start-ups and the stage's extra write and read of the lines, spread over the windows.

Usage: scripts/mage_bench.py [--invoices 200000] [--chunk-days 50] [--page-size 1000] [--smoke]
Run it with the Mage venv's python (.venv-mage/bin/python).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def measured(cmd, env, log_path):
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"{cmd[:3]} exited {code}:\n{tail}")
    return dict(
        wall_s=round(wall, 2),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
    )


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--invoices", type=int, default=200_000)
    p.add_argument("--chunk-days", type=int, default=50)
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--start", default="2015-01-01")
    p.add_argument("--end", default="2026-01-01")
    p.add_argument("--smoke", action="store_true", help="2,000 invoices: checks the script still works")
    args = p.parse_args()
    if args.smoke:
        args.invoices = 2000
    work = tempfile.mkdtemp(prefix="mage_bench.")
    emu = subprocess.Popen(
        [
            os.path.join(BIN, "qbo-rs"),
            "emulator",
            "--port",
            "0",
            "--seed",
            "7",
            "--invoices",
            str(args.invoices),
            "--customers",
            "10",
            "--items",
            "10",
            "--throttle-per-minute",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QBO_", "MAGE_", "POSTGRES_"))}
        assert emu.stdout is not None
        # `export QBO_…='…'` lines, then the emulator closes its stdout: read to the end.
        for line in emu.stdout.read().splitlines():
            key, _, value = shlex.split(line)[1].partition("=")
            env[key] = value
        env.update(
            MAGE_DATA_DIR=os.path.join(work, "mage_data"),
            QBO_TOKEN_STORE=os.path.join(work, "tokens.json"),
            QBO_RS_REALM_RPM="1000000",
            QBO_RS_REALM_MAX_IN_FLIGHT="10",
        )
        common = [
            "--start",
            args.start,
            "--end",
            args.end,
            "--chunk-days",
            str(args.chunk_days),
            "--page-size",
            str(args.page_size),
            "--requests-per-minute",
            "1000000",
            "--no-progress",
        ]
        qbo = os.path.join(BIN, "qbo-rs")
        results = {}
        results["qbo-rs backfill (4 windows at once)"] = measured(
            [qbo, "backfill", "invoice", *common, "--data-dir", os.path.join(work, "plain4")],
            env,
            os.path.join(work, "plain4.log"),
        )
        results["qbo-rs backfill (1 window at a time)"] = measured(
            [
                qbo,
                "backfill",
                "invoice",
                *common,
                "--max-concurrent-windows",
                "1",
                "--data-dir",
                os.path.join(work, "plain1"),
            ],
            env,
            os.path.join(work, "plain1.log"),
        )
        runner = [
            sys.executable,
            os.path.join(REPO, "scripts", "mage_run_pipeline.py"),
            "qb_invoice_backfill",
            "--quiet",
            "--var",
            f"chunk_days={args.chunk_days}",
            "--var",
            f"page_size={args.page_size}",
        ]
        results["Mage start-up (1 empty window)"] = measured(
            runner
            + [
                "--var",
                "fecha_inicio=2000-01-01",
                "--var",
                "fecha_fin=2000-01-02",
                "--var",
                f"data_dir={os.path.join(work, 'empty')}",
            ],
            env,
            os.path.join(work, "startup.log"),
        )
        results["Mage qb_invoice_backfill (headless runner)"] = measured(
            runner
            + [
                "--var",
                f"fecha_inicio={args.start}",
                "--var",
                f"fecha_fin={args.end}",
                "--var",
                f"data_dir={os.path.join(work, 'mage')}",
            ],
            env,
            os.path.join(work, "mage.log"),
        )
        with open(os.path.join(work, "mage.log")) as f:
            mage_log = f.read()
        found = re.search(r"Plan: (\d+) window", mage_log)
        windows = int(found.group(1)) if found else 0
        # The children: a fetch and an export per share (the planner, the summary and one
        # controller run per child block are counted in start-up).
        child_runs = len(re.findall(r"^  block_run qb_(?:fetch|export)_window:", mage_log, re.M))
        rows = {
            name: count_lines(os.path.join(work, d, "invoices.txt"))
            for name, d in (("plain", "plain4"), ("mage", "mage"))
        }
        assert rows["plain"] == rows["mage"], rows
        mage = results["Mage qb_invoice_backfill (headless runner)"]
        startup = results["Mage start-up (1 empty window)"]
        seq = results["qbo-rs backfill (1 window at a time)"]
        per_window = (mage["wall_s"] - startup["wall_s"] - seq["wall_s"]) / max(windows, 1)
        print(
            f"{args.invoices} invoices, [{args.start}, {args.end}), chunk_days={args.chunk_days} -> "
            f"{windows} windows, page_size={args.page_size}, {rows['mage']} rows landed"
        )
        print(f"{'':45s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB':>12s}")
        for name, r in results.items():
            print(f"{name:45s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mb']:12.1f}")
        print(
            f"Mage overhead per window: {per_window * 1000:.0f} ms "
            f"(= (Mage wall - start-up - sequential qbo-rs wall) / {windows} windows), "
            f"{child_runs} child block runs in all (qb_fetch_window:<share> + qb_export_window:<n>)"
        )
        print(
            json.dumps(
                dict(
                    invoices=args.invoices,
                    windows=windows,
                    results=results,
                    child_block_runs=child_runs,
                    overhead_per_window_s=round(per_window, 3),
                )
            )
        )
    finally:
        emu.terminate()
        emu.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
