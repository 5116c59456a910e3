#!/usr/bin/env python
"""Follow the data: what a backfill costs in requests, seconds, memory and Mage block runs, at
QuickBooks' limits, through every path a user can take. A benchmark, not a test: it prints the
measured figures beside their targets (and "over target" where one is missed); it exits non-zero
only when a run fails or the data it landed differs from the emulator's truth.

Against the bundled emulator (qbo_rs.testing.QboEmulator, in this process) at QuickBooks' limits:
500 query requests per sliding minute and 10 in flight per realm, 200 ms latency per request.

  (a) 300 invoices over 2000-01-01..2100-01-01, `qbo-rs backfill` with its defaults
      (targets: <= 3 requests, < 5 s).
  (b) --invoices (102,500, of which 100,155 fall in the range with seed 7: at least 100,000 are
      asked for) over 2014-09-01..2025-09-12 with chunk_days 1, 50 and 3650, each through
      1. the CLI               qbo-rs backfill invoice ... --chunk-days C
      2. the headless runner   scripts/mage_run_pipeline.py qb_invoice_backfill --var chunk_days=C
      3. Mage's scheduler      scripts/mage_scheduler.py --until-idle on a copy of mage_project
                               whose triggers.yaml says chunk_days: C (what a UI trigger runs)

Per run: records landed (lines of invoices.txt, compared id by id and sync_token by sync_token
with the emulator's truth in the range), requests (the emulator's query_requests delta, counts
included), wall seconds, peak RSS of the whole process tree (summed per-pid peaks), and for Mage
its block runs (Mage's sqlite DB) and worker processes (the summary block's log line).
Floor: ceil(records / 1000) requests (one page of 1000 per request), taking floor / 490 * 60 s
at qbo_rs's 490 requests/min. Targets: requests <= 1.05 x floor + 2; Mage scheduler wall <=
1.5 x floor time + 15 s; Mage scheduler summed peak RSS <= 1 GB; Mage block runs <= 2 x children
+ 2 (children = fetch block runs; Mage's controller records for the dynamic child blocks,
`qb_fetch_window` / `qb_export_window`, are not counted).

Usage (the Mage venv's python: it runs Mage and has qbo_rs):
  .venv-mage/bin/python scripts/data_bench.py [--invoices 102500] [--smoke]
--smoke: 2,000 invoices, chunk_days 50, CLI and headless runner only, no latency (make test).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from qbo_rs.testing import QboEmulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.join(REPO, "mage_project")
RUNNER = os.path.join(REPO, "scripts", "mage_run_pipeline.py")
SCHEDULER = os.path.join(REPO, "scripts", "mage_scheduler.py")
# The qbo-rs entry point of this interpreter's venv (the same wheel Mage's blocks import).
QBO = os.path.join(os.path.dirname(sys.executable), "qbo-rs")
PIPELINE = "qb_invoice_backfill"

PAGE = 1000  # records per request (QuickBooks' maximum, qbo_rs's default)
PACE_PER_MINUTE = 490  # qbo_rs's realm budget (QuickBooks allows ~500)
SMALL_RANGE = ("2000-01-01", "2100-01-01")
BIG_RANGE = ("2014-09-01", "2025-09-12")
RUN_TIMEOUT_S = 1800  # a hung run is a failed run, not a hung benchmark
SCHEDULER_MAX_S = 900
GB_MB = 1024
# Environment the runs must not inherit: credentials, Mage and PostgreSQL settings of this shell.
SCRUBBED = ("QBO_", "POSTGRES_", "MAGE_", "QBO_RS_MAGE", "QBO_RS_REALM")
CONTROLLERS = ("qb_fetch_window", "qb_export_window")


# ------------------------------------------------------------------------------------------------
# Peak RSS of a process tree: Mage runs each block run in its own process (the scheduler) and
# wait4()'s ru_maxrss only sees one process, so /proc is polled for every descendant.
# ------------------------------------------------------------------------------------------------


def _proc_table() -> Dict[int, Tuple[int, str]]:
    """{pid: (ppid, start time)} of every process now; the start time tells a reused pid apart."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
        table[int(name)] = (int(fields[1]), fields[19])
    return table


def _memory_kb(pid: int) -> Tuple[int, int, int]:
    """(VmRSS, VmHWM, Pss) in kB; zeros for a process that is gone or a zombie."""
    rss = hwm = pss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, hwm, pss


def _what(pid: int) -> str:
    """What a process runs, shortened: its command line (Mage's workers keep their parent's)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    return " ".join(os.path.basename(a) if i < 2 else a for i, a in enumerate(argv))[:100]


class TreeMemory(threading.Thread):
    """Every `interval` s (every 20 ms in the first second, so a short run is not seen only at
    start-up): the descendants of `root` (and of any process seen before, in case one was
    re-parented to init), each one's peak (its VmHWM, the kernel's high-water mark, so a spike
    between two polls still counts as long as the process lives until the next poll), and the
    largest sums of VmRSS and of PSS seen at one poll. PSS splits pages shared between processes
    (Mage forks its block-run workers from a ~300 MB parent) among them: the memory really used.

    Not wait4()'s ru_maxrss: at exec the kernel folds the old address space's high-water mark
    into it, and a spawned child's old address space is this process's (the emulator and its
    100k records), so every child would "peak" at this process's size."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_kb: Dict[Tuple[int, str], int] = {}
        self.what: Dict[Tuple[int, str], str] = {}
        self.live_peak_kb = 0
        self.pss_peak_kb = 0
        self._done = threading.Event()

    def sample(self) -> None:
        table = _proc_table()
        children: Dict[int, List[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        known = {pid for pid, start in self.peak_kb if table.get(pid, (0, ""))[1] == start}
        todo, tree = [self.root, *known], set()
        while todo:
            pid = todo.pop()
            if pid in tree or pid not in table:
                continue
            tree.add(pid)
            todo.extend(children.get(pid, ()))
        live = pss = 0
        for pid in tree:
            rss, hwm, share = _memory_kb(pid)
            if rss == 0 and hwm == 0:
                continue
            key = (pid, table[pid][1])
            self.peak_kb[key] = max(self.peak_kb.get(key, 0), rss, hwm)
            if key not in self.what:
                self.what[key] = f"pid {pid} (parent {table[pid][0]}): {_what(pid)}"
            live += rss
            pss += share
        self.live_peak_kb = max(self.live_peak_kb, live)
        self.pss_peak_kb = max(self.pss_peak_kb, pss)

    def run(self) -> None:
        started = time.monotonic()
        while not self._done.is_set():
            self.sample()
            self._done.wait(0.02 if time.monotonic() - started < 1 else self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def summed_peak_mb(self) -> float:
        return sum(self.peak_kb.values()) / 1024

    @property
    def processes(self) -> int:
        return len(self.peak_kb)

    def breakdown(self) -> List[str]:
        """One line per process seen, in order of appearance: its peak RSS and what it ran."""
        return [f"{self.peak_kb[key] / 1024:7.0f} MB  {self.what.get(key, '?')}" for key in self.peak_kb]


# ------------------------------------------------------------------------------------------------
# One measured run.
# ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    section: str
    path: str  # cli | headless | scheduler
    chunk_days: Optional[int]
    command: List[str]
    work: str  # this run's folder (logs, data, Mage data)
    data_dir: str
    mage_data_dir: Optional[str] = None
    # measured
    rc: Optional[int] = None
    ok: bool = False
    failure: str = ""
    wall_s: float = 0.0
    requests: int = 0
    throttled: int = 0
    breakdown: List[str] = field(default_factory=list)
    records: int = 0
    truth_ok: bool = False
    truth_note: str = ""
    windows: Optional[int] = None
    rss_mb: float = 0.0
    live_mb: float = 0.0
    pss_mb: float = 0.0
    processes: int = 0
    block_runs: Optional[int] = None
    children: Optional[int] = None
    workers: Optional[int] = None
    notes: List[str] = field(default_factory=list)

    @property
    def is_mage(self) -> bool:
        return self.path != "cli"


def execute(run: Run, env: Dict[str, str], emu: QboEmulator, cwd: str) -> None:
    """Runs the command, measuring wall time, the process tree's memory and the requests the
    emulator answered meanwhile (nothing else talks to it during a run)."""
    before = emu.stats()
    with open(os.path.join(run.work, "stdout.log"), "w") as out, open(os.path.join(run.work, "stderr.log"), "w") as err:
        started = time.monotonic()
        proc = subprocess.Popen(run.command, env=env, cwd=cwd, stdout=out, stderr=err)
        memory = TreeMemory(proc.pid)
        memory.start()
        try:
            run.rc = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            run.rc = proc.wait()
            run.failure = f"timed out after {RUN_TIMEOUT_S} s"
        run.wall_s = time.monotonic() - started
        memory.stop()
    after = emu.stats()
    run.requests = after["query_requests"] - before["query_requests"]
    run.throttled = after["throttled"] - before["throttled"]
    run.rss_mb, run.live_mb, run.pss_mb = memory.summed_peak_mb, memory.live_peak_kb / 1024, memory.pss_peak_kb / 1024
    run.processes = memory.processes
    run.breakdown = memory.breakdown()
    with open(os.path.join(run.work, "processes.txt"), "w") as f:
        f.write("\n".join(run.breakdown) + "\n")
    if run.rc != 0 and not run.failure:
        run.failure = f"exit code {run.rc}"


def read_landed(path: str) -> Tuple[int, Dict[str, str], List[str]]:
    """(lines, {id: sync_token}, problems) of a RAW JSON-lines file, read strictly like the tests:
    one JSON object per line, one line per id, no torn last line."""
    if not os.path.exists(path):
        return 0, {}, [f"{path} does not exist"]
    problems: List[str] = []
    records: Dict[str, str] = {}
    lines = 0
    with open(path, "rb") as f:
        for lines, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                problems.append(f"line {lines} is torn (no newline)")
            obj = json.loads(line)
            if obj["id"] in records:
                problems.append(f"line {lines} repeats id {obj['id']}")
            records[obj["id"]] = str(obj["sync_token"])
    return lines, records, problems


def check_landed(run: Run, expected: Dict[str, str]) -> None:
    lines, landed, problems = read_landed(os.path.join(run.data_dir, "invoices.txt"))
    run.records = lines
    if landed != expected:
        missing = expected.keys() - landed.keys()
        extra = landed.keys() - expected.keys()
        stale = [k for k in expected.keys() & landed.keys() if expected[k] != landed[k]]
        problems.append(
            f"{len(missing)} missing, {len(extra)} outside the range or unknown, "
            f"{len(stale)} with another sync_token than the emulator"
        )
    run.truth_ok = not problems
    run.truth_note = "; ".join(problems[:3])


def mage_figures(run: Run, pipeline_run_id: Optional[int]) -> None:
    """Block runs from Mage's own database (as the tests count them) and the summary block's
    `Summary: W window(s) in S share(s), P worker process(es)` log line."""
    assert run.mage_data_dir is not None, "a Mage run has its data dir"
    db = os.path.join(run.mage_data_dir, "mage_project", "mage-ai.db")
    if os.path.exists(db):
        with sqlite3.connect(db) as conn:
            query = "select block_uuid from block_run"
            rows = [
                r[0]
                for r in (
                    conn.execute(query + " where pipeline_run_id = ?", (pipeline_run_id,))
                    if pipeline_run_id is not None
                    else conn.execute(query)
                )
            ]
        counted = [r for r in rows if r not in CONTROLLERS]
        run.block_runs = len(counted)
        run.children = len([r for r in counted if r.startswith("qb_fetch_window:")])
    logs = glob.glob(
        os.path.join(
            run.mage_data_dir, "mage_project", "pipelines", PIPELINE, ".logs", "*", "*", "qb_backfill_summary.log"
        )
    )
    text = ""
    for path in logs:
        with open(path, errors="replace") as f:
            text += f.read()
    found = re.findall(r"Summary: (\d+) window\(s\) in (\d+) share\(s\), (\d+) worker process", text)
    if found:
        windows, _, workers = map(int, found[-1])
        run.windows, run.workers = windows, workers


# ------------------------------------------------------------------------------------------------
# The three paths.
# ------------------------------------------------------------------------------------------------


def base_env(emu: QboEmulator) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    env.update(emu.env())  # credentials through the environment, the CLI's and the blocks' fallback
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ left in the project folder
    return env


def new_run(work: str, section: str, path: str, chunk_days: Optional[int]) -> Run:
    folder = os.path.join(work, f"{section}-{path}-{chunk_days or 'default'}")
    os.makedirs(folder)
    return Run(section, path, chunk_days, [], folder, os.path.join(folder, "data"))


def run_cli(work: str, emu: QboEmulator, section: str, start: str, end: str, chunk_days: Optional[int]) -> Run:
    run = new_run(work, section, "cli", chunk_days)
    run.command = [QBO, "backfill", "invoice", "--start", start, "--end", end]
    if chunk_days is not None:  # None: the defaults, as a newcomer types it
        run.command += ["--chunk-days", str(chunk_days)]
    run.command += ["--data-dir", run.data_dir]
    env = base_env(emu)
    # Its own budget file and token store: nothing shared with other runs or with ~/.local/state.
    env.update(QBO_LIMITER_DIR=os.path.join(run.work, "budget"), QBO_TOKEN_STORE=os.path.join(run.work, "tokens.json"))
    execute(run, env, emu, cwd=run.work)
    with open(os.path.join(run.work, "stderr.log"), errors="replace") as f:
        found = re.findall(r"row\(s\) in (\d+) window\(s\)", f.read())
    run.windows = int(found[-1]) if found else None
    return run


def mage_env(run: Run, emu: QboEmulator) -> Dict[str, str]:
    """What tests/mage/conftest.py base_env sets: fresh Mage data, data and realm budget folders."""
    run.mage_data_dir = os.path.join(run.work, "mage_data")
    env = base_env(emu)
    env.update(
        MAGE_DATA_DIR=run.mage_data_dir, QBO_DATA_DIR=run.data_dir, QBO_LIMITER_DIR=os.path.join(run.work, "budget")
    )
    return env


def run_headless(work: str, emu: QboEmulator, section: str, start: str, end: str, chunk_days: Optional[int]) -> Run:
    run = new_run(work, section, "headless", chunk_days)
    env = mage_env(run, emu)
    run.command = [
        sys.executable,
        RUNNER,
        PIPELINE,
        "--project",
        PROJECT,
        "--var",
        f"fecha_inicio={start}",
        "--var",
        f"fecha_fin={end}",
        "--var",
        f"chunk_days={chunk_days}",
    ]
    execute(run, env, emu, cwd=REPO)
    with open(os.path.join(run.work, "stdout.log"), errors="replace") as f:
        stdout = f.read()
    found = re.search(r"pipeline_run_id=(\d+)", stdout)
    mage_figures(run, int(found.group(1)) if found else None)
    if run.rc == 0 and f"pipeline_run {found.group(1) if found else '?'} -> completed" not in stdout:
        run.failure = "the runner did not report the pipeline run completed"
    return run


def run_scheduler(work: str, emu: QboEmulator, section: str, start: str, end: str, chunk_days: Optional[int]) -> Run:
    """A copy of the project whose trigger carries this chunk_days (the trigger, not the command
    line, is where a scheduled run's variables come from), run by Mage's own scheduler loop."""
    run = new_run(work, section, "scheduler", chunk_days)
    env = mage_env(run, emu)
    project = os.path.join(run.work, "copy", "mage_project")
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    triggers = os.path.join(project, "pipelines", PIPELINE, "triggers.yaml")
    with open(triggers) as f:
        text = f.read()
    # The shipped trigger's range is the range measured here; only chunk_days changes.
    for name, value in (("fecha_inicio", start), ("fecha_fin", end)):
        if f"{name}: '{value}'" not in text:
            raise SystemExit(f"{triggers}: expected {name}: {value!r} in the shipped trigger; update this bench")
    text, n = re.subn(r"(?m)^(\s*chunk_days:\s*)\d+\s*$", rf"\g<1>{chunk_days}", text)
    if n != 1:
        raise SystemExit(f"{triggers}: expected one chunk_days line, found {n}; update this bench")
    with open(triggers, "w") as f:
        f.write(text)
    run.command = [
        sys.executable,
        SCHEDULER,
        "--project",
        project,
        "--until-idle",
        "--interval",
        "1",
        "--max-seconds",
        str(SCHEDULER_MAX_S),
    ]
    execute(run, env, emu, cwd=REPO)
    with open(os.path.join(run.work, "stdout.log"), errors="replace") as f:
        stdout = f.read()
    mage_figures(run, 1)  # a fresh database: the trigger's run is run 1
    done = f"[final] schedule {PIPELINE}/qb_invoice_trigger @once status=inactive runs=[(1, 'completed')]"
    if run.rc == 0 and done not in stdout:
        run.failure = "the scheduler did not report runs=[(1, 'completed')]"
    return run


# ------------------------------------------------------------------------------------------------
# Floors, targets, the table.
# ------------------------------------------------------------------------------------------------


def floor_requests(records: int) -> int:
    return max(1, math.ceil(records / PAGE))


def floor_seconds(requests: int) -> float:
    return requests / PACE_PER_MINUTE * 60


@dataclass
class Targets:
    requests: Optional[float] = None  # at most
    wall_s: Optional[float] = None  # at most (strictly under when wall_strict)
    wall_strict: bool = False
    rss_mb: Optional[float] = None  # at most
    block_runs: Optional[int] = None  # at most


def targets_for(run: Run, expected_records: int) -> Targets:
    floor = floor_requests(expected_records)
    if run.section == "a":
        return Targets(requests=3, wall_s=5, wall_strict=True)
    t = Targets(requests=1.05 * floor + 2)
    if run.path == "scheduler":
        t.wall_s = 1.5 * floor_seconds(floor) + 15
        t.rss_mb = 1 * GB_MB
    if run.is_mage and run.children is not None:
        t.block_runs = 2 * run.children + 2
    return t


def judge(run: Run, t: Targets) -> None:
    if not run.ok:
        run.notes.append(f"FAILED: {run.failure or run.truth_note}")
    if t.requests is not None and run.requests > t.requests:
        run.notes.append("requests over target")
    if t.wall_s is not None and (run.wall_s >= t.wall_s if t.wall_strict else run.wall_s > t.wall_s):
        run.notes.append("wall over target")
    if t.rss_mb is not None and run.rss_mb > t.rss_mb:
        run.notes.append("RSS over target")
    if t.block_runs is not None and run.block_runs is not None and run.block_runs > t.block_runs:
        run.notes.append("block runs over target")
    if run.throttled:
        run.notes.append(f"{run.throttled} answered 429")


def fmt(value, spec: str = "d") -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = (  # (title, width)
    ("run", 24),
    ("chunk", 5),
    ("windows", 7),
    ("records", 8),
    ("=truth", 6),
    ("req", 5),
    ("floor", 5),
    ("target", 8),
    ("wall s", 7),
    ("floor s", 7),
    ("target s", 8),
    ("RSS MB", 7),
    ("target", 7),
    ("live MB", 7),
    ("PSS MB", 6),
    ("procs", 5),
    ("block runs", 10),
    ("children", 8),
    ("target", 6),
    ("workers", 7),
    ("notes", 0),
)


def row(cells: List[str]) -> str:
    out = []
    for (title, width), cell in zip(COLUMNS, cells):
        out.append(cell.ljust(width) if title in ("run", "notes") else cell.rjust(width))
    return "  ".join(out).rstrip()


def table_row(run: Run, expected_records: int, t: Targets) -> str:
    floor = floor_requests(expected_records)
    name = {"cli": "CLI qbo-rs backfill", "headless": "Mage headless runner", "scheduler": "Mage scheduler"}[run.path]
    wall_target = None if t.wall_s is None else ("<" if t.wall_strict else "<=") + f"{t.wall_s:.1f}"
    return row(
        [
            f"({run.section}) {name}",
            fmt(run.chunk_days) if run.chunk_days else "dflt",
            fmt(run.windows),
            fmt(run.records),
            "yes" if run.truth_ok else "NO",
            fmt(run.requests),
            fmt(floor),
            "-" if t.requests is None else f"<={t.requests:g}",
            f"{run.wall_s:.1f}",
            f"{floor_seconds(floor):.1f}",
            wall_target or "-",
            f"{run.rss_mb:.0f}",
            "-" if t.rss_mb is None else f"<={t.rss_mb:.0f}",
            f"{run.live_mb:.0f}",
            f"{run.pss_mb:.0f}",
            fmt(run.processes),
            fmt(run.block_runs),
            fmt(run.children),
            "-" if t.block_runs is None else f"<={t.block_runs}",
            fmt(run.workers),
            "; ".join(run.notes) or "within target",
        ]
    )


def in_range(truth: List[dict], start: str, end: str) -> Dict[str, str]:
    """{id: sync_token} of the records whose LastUpdatedTime (the backfill's filter) is in
    [start, end); last_updated_utc is 'YYYY-MM-DDTHH:MM:SSZ', so strings compare as instants."""
    lo, hi = f"{start}T00:00:00Z", f"{end}T00:00:00Z"
    return {r["id"]: str(r["sync_token"]) for r in truth if lo <= r["last_updated_utc"] < hi}


def git(*args: str) -> str:
    p = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "?"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--invoices",
        type=int,
        default=102_500,
        help="invoices in the emulator for (b) (default 102,500: 100,155 in range)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="2,000 invoices, chunk_days 50, CLI and headless runner only, no latency (make test)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, data) even when all went well")
    args = p.parse_args()
    if args.smoke:
        args.invoices = 2000
    chunk_sizes = [50] if args.smoke else [1, 50, 3650]
    paths = ["cli", "headless"] if args.smoke else ["cli", "headless", "scheduler"]
    latency_ms = 0 if args.smoke else 200
    limits = dict(customers=5, items=5, throttle_per_minute=500, max_in_flight=10, latency_ms=latency_ms)

    dirty = " (+ uncommitted changes)" if git("status", "--porcelain") else ""
    print(f"data_bench  commit {git('rev-parse', '--short', 'HEAD')}{dirty}")
    print(f"command     {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"emulator    seed {args.seed}, throttle 500 requests/min and 10 in flight per realm, "
        f"{latency_ms} ms latency; qbo_rs paces at {PACE_PER_MINUTE}/min"
    )
    print(f"floor       ceil(records / {PAGE}) requests, taking floor / {PACE_PER_MINUTE} * 60 s", flush=True)

    work = tempfile.mkdtemp(prefix="data_bench.")
    results: List[Tuple[Run, int, Targets]] = []
    plan = [("a", "cli", None)] + [("b", path, c) for c in chunk_sizes for path in paths]
    step = 0

    def measure(
        emu: QboEmulator,
        section: str,
        path: str,
        chunk_days: Optional[int],
        start: str,
        end: str,
        expected: Dict[str, str],
    ) -> None:
        nonlocal step
        step += 1
        runner = {"cli": run_cli, "headless": run_headless, "scheduler": run_scheduler}[path]
        print(f"[{step}/{len(plan)}] ({section}) {path} chunk_days={chunk_days or 'default'} ...", end=" ", flush=True)
        run = runner(work, emu, section, start, end, chunk_days)
        check_landed(run, expected)
        run.ok = run.rc == 0 and not run.failure and run.truth_ok
        t = targets_for(run, len(expected))
        judge(run, t)
        print(
            f"{run.wall_s:.1f} s, {run.records} records, {run.requests} requests"
            + ("" if run.ok else f"  FAILED ({run.failure or run.truth_note}); logs in {run.work}"),
            flush=True,
        )
        print(f"    $ {shlex.join(run.command)}", flush=True)
        if run.is_mage:
            print("\n".join(f"    {line}" for line in run.breakdown), flush=True)
        results.append((run, len(expected), t))
        if run.ok:  # ~220 MB of lines per 100k-invoice run: keep only the logs
            shutil.rmtree(run.data_dir, ignore_errors=True)
            if run.mage_data_dir:
                shutil.rmtree(os.path.join(run.work, "copy"), ignore_errors=True)

    try:
        with QboEmulator(seed=args.seed, invoices=300, **limits) as emu:
            expected_small = in_range(emu.truth("Invoice"), *SMALL_RANGE)
            print(
                f"\n(a) 300 invoices, [{SMALL_RANGE[0]}, {SMALL_RANGE[1]}): {len(expected_small)} in range", flush=True
            )
            measure(emu, "a", "cli", None, *SMALL_RANGE, expected_small)
        with QboEmulator(seed=args.seed, invoices=args.invoices, **limits) as emu:
            expected = in_range(emu.truth("Invoice"), *BIG_RANGE)
            floor = floor_requests(len(expected))
            if len(expected) < 100_000 and not args.smoke:
                print(
                    f"note: only {len(expected):,} invoices in the range; (b) asks for at least 100,000 (raise --invoices)"
                )
            print(
                f"\n(b) {args.invoices:,} invoices, [{BIG_RANGE[0]}, {BIG_RANGE[1]}): {len(expected):,} in range; "
                f"floor {floor} requests, {floor_seconds(floor):.1f} s",
                flush=True,
            )
            for chunk_days in chunk_sizes:
                for path in paths:
                    measure(emu, "b", path, chunk_days, *BIG_RANGE, expected)
    finally:
        print()
        print(row([title for title, _ in COLUMNS]))
        for run, n, t in results:
            print(table_row(run, n, t))
        print("""
records   lines of invoices.txt; =truth: the same ids and sync_tokens as the emulator's records whose
          LastUpdatedTime is in the range (no duplicate id, no torn line)
req       query requests the emulator answered during the run (pages, counts, retries; 429s included)
floor     ceil(records / 1000) requests; floor s = floor / 490 * 60; targets: req <= 1.05 x floor + 2,
          Mage scheduler wall <= 1.5 x floor s + 15, (a) <= 3 requests and < 5 s
RSS MB    sum over every process of the run's tree of its peak RSS (VmHWM, polled every 0.2 s);
          forked processes count the pages they share each time. Target (Mage scheduler) <= 1 GB.
live MB   the largest sum of VmRSS seen at one poll; PSS MB: the largest sum of PSS (shared pages
          split between their processes) seen at one poll; procs: processes seen in the tree
block     Mage block runs of the pipeline run in Mage's sqlite DB, without the controller records
runs      qb_fetch_window / qb_export_window; children: qb_fetch_window:<share> runs; target <= 2 x children + 2
workers   distinct fetch processes, from the summary block's "Summary: ... worker process(es)" line""")
        failed = [r for r, _, _ in results if not r.ok]
        over = [r for r, _, _ in results if r.ok and any("over target" in n for n in r.notes)]
        print(f"\n{len(results)} run(s): {len(failed)} failed, {len(over)} with a figure over target.")
        if failed or args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or len(results) < len(plan) else 0


if __name__ == "__main__":
    sys.exit(main())
