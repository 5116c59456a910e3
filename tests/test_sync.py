"""`sync` keeps the RAW layer fresh: after a backfill, creates, edits and deletes in QuickBooks
(the emulator) reach every sink, deletions are marked (never dropped), more than CDC's 1,000
objects or a sweep older than its 30 days fall back to a reconciliation, a killed sync converges
when run again, a sync with nothing new costs two requests and writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, Set, Tuple

import pytest
from conftest import PG_DSN, RANGE_END, RANGE_START, psql, truth_versions

from qbo_rs.testing import QboEmulator

DSN = PG_DSN
if not DSN and os.environ.get("CI") == "true":
    raise RuntimeError("CI=true and QBO_RS_TEST_DSN is not set: `make test` starts PostgreSQL itself")
needs_pg = pytest.mark.skipif(not DSN, reason="no PostgreSQL: set QBO_RS_TEST_DSN or run `make test`")
SINKS = ["txt", pytest.param("postgres", marks=needs_pg), pytest.param("both", marks=needs_pg)]


def txt_state(data_dir: Path, plural: str) -> Tuple[Dict[str, str], Set[str]]:
    """Live ids -> sync_token, and the ids marked deleted, as a reader of the file sees them."""
    live: Dict[str, str] = {}
    deleted: Set[str] = set()
    path = data_dir / f"{plural}.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        obj = json.loads(line)
        if obj.get("deleted_at_utc") is None:
            live[obj["id"]] = obj["sync_token"]
        else:
            deleted.add(obj["id"])
    return live, deleted


def pg_state(schema: str, table: str) -> Tuple[Dict[str, str], Set[str]]:
    rows = psql(f'select id, sync_token, deleted_at_utc is not null from "{schema}"."{table}"').splitlines()
    live = {i: t for i, t, d in (r.split("|") for r in rows) if d == "f"}
    return live, {i for i, _, d in (r.split("|") for r in rows) if d == "t"}


def sink_states(
    sink: str, data_dir: Path, schema: str, plural: str = "invoices"
) -> Dict[str, Tuple[Dict[str, str], Set[str]]]:
    states = {}
    if sink in ("txt", "both"):
        states["txt"] = txt_state(data_dir, plural)
    if sink in ("postgres", "both"):
        states["postgres"] = pg_state(schema, "qb_" + plural)
    return states


def sink_options(sink: str, data_dir: Path, schema: str) -> dict:
    options: dict = {"sink": sink, "data_dir": data_dir, "fsync": False}
    if sink != "txt":
        options.update(dsn=DSN, pg_schema=schema)
    return options


def deleted_ids(emu: QboEmulator, entity: str = "Invoice") -> Set[str]:
    return {d["id"] for d in emu.deleted(entity)}


def next_second() -> None:
    # A sync reads up to the last whole second before QuickBooks' clock: a change made within
    # the current second belongs to the next sync.
    time.sleep(1.1)


@pytest.mark.parametrize("sink", SINKS)
def test_sync_brings_creates_edits_and_deletes(emulator: QboEmulator, client_factory, sink, tmp_path: Path, schema):
    client = client_factory(emulator)
    options = sink_options(sink, tmp_path, schema)
    client.backfill("invoice", RANGE_START, RANGE_END, **options)
    client.backfill("customer", RANGE_START, RANGE_END, **options)
    held = set(truth_versions(emulator, "Invoice"))

    created = [emulator.create("invoice")["Id"] for _ in range(3)]
    for rid in ["3", "40", "700", "1200", "1499"]:
        emulator.edit("Invoice", rid)
    gone = ["7", "8", "900", "1400"]
    for rid in gone:
        emulator.delete("invoice", rid)
    emulator.delete("invoice", created[0])  # created and deleted between two syncs: never held
    customer = emulator.truth("Customer")[5]["id"]
    emulator.delete("customer", customer)  # list records are made inactive, not deleted
    next_second()

    report = client.sync("invoice", **options)
    assert report.mode == "incremental" and report.ok and report.state_saved, report
    assert report.inserted == 2 and report.updated == 5, report
    assert report.deleted == len(gone), report
    for name, (live, deleted) in sink_states(sink, tmp_path, schema).items():
        assert live == truth_versions(emulator, "Invoice"), name
        assert deleted == set(gone) == deleted_ids(emulator) & held, name

    customers = client.sync("customer", **options)
    assert customers.ok and customers.deleted == 0 and customers.updated == 1, customers
    for name, (live, deleted) in sink_states(sink, tmp_path, schema, "customers").items():
        assert live == truth_versions(emulator, "Customer") and not deleted, name


def test_a_second_sync_with_no_change_costs_two_requests_and_writes_nothing(
    emulator: QboEmulator, client_factory, tmp_path: Path
):
    client = client_factory(emulator)
    first = client.sync("invoice", data_dir=tmp_path, fsync=False)
    assert first.mode == "initial" and first.inserted == 1500 and first.requests_by_kind["cdc"] == 0, first
    before = (tmp_path / "invoices.txt").read_bytes()
    second = client.sync("invoice", data_dir=tmp_path, fsync=False)
    assert second.mode == "incremental", second
    assert (second.inserted, second.updated, second.deleted) == (0, 0, 0), second
    assert second.requests == 2 and second.requests_by_kind["cdc"] == 1 and second.requests_by_kind["count"] == 1, (
        second
    )
    assert (tmp_path / "invoices.txt").read_bytes() == before


def test_more_than_a_thousand_changes_reconcile(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    client.sync("invoice", data_dir=tmp_path, fsync=False)
    for rid in range(1, 1101):
        emulator.edit("Invoice", str(rid))
    gone = ["1200", "1300", "1301"]
    for rid in gone:
        emulator.delete("invoice", rid)
    next_second()
    report = client.sync("invoice", data_dir=tmp_path, fsync=False)
    assert report.mode == "reconciliation" and "cap" in (report.reason or ""), report
    assert report.updated == 1100 and report.deleted == 3 and report.ok, report
    live, deleted = txt_state(tmp_path, "invoices")
    assert live == truth_versions(emulator, "Invoice") and deleted == set(gone)
    # The next sync stays incremental: the answer for its overlap holds the burst just read (at
    # the cap), so CDC is asked again from the last sweep itself, which holds nothing new.
    again = client.sync("invoice", data_dir=tmp_path, fsync=False)
    assert again.mode == "incremental" and again.requests_by_kind["cdc"] == 2, again
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0), again


def test_a_sweep_older_than_thirty_days_reconciles(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    client.sync("invoice", data_dir=tmp_path, fsync=False)
    (state_file,) = (tmp_path / ".qbo_rs").glob("invoices.txt.sync-*.json")
    state = json.loads(state_file.read_text())
    old = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()
    state_file.write_text(json.dumps(dict(state, swept_through=old)))
    gone = ["11", "12"]
    for rid in gone:
        emulator.delete("invoice", rid)
    next_second()
    report = client.sync("invoice", data_dir=tmp_path, fsync=False)
    assert report.mode == "reconciliation" and "30 days" in (report.reason or ""), report
    assert report.deleted == 2 and report.requests_by_kind["cdc"] == 0, report
    live, deleted = txt_state(tmp_path, "invoices")
    assert live == truth_versions(emulator, "Invoice") and deleted == set(gone)


def test_a_deleted_then_recreated_id_ends_alive(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    client.sync("invoice", data_dir=tmp_path, fsync=False)
    emulator.delete("invoice", "42")
    next_second()
    assert client.sync("invoice", data_dir=tmp_path, fsync=False).deleted == 1
    assert "42" in txt_state(tmp_path, "invoices")[1]
    emulator.create("invoice", id="42")
    next_second()
    report = client.sync("invoice", data_dir=tmp_path, fsync=False)
    assert report.updated == 1, report
    live, deleted = txt_state(tmp_path, "invoices")
    assert "42" in live and "42" not in deleted and live == truth_versions(emulator, "Invoice")


@pytest.mark.parametrize("sink", SINKS)
def test_sigkill_mid_sync_then_rerun_converges(sink, tmp_path: Path, schema):
    with QboEmulator(seed=12, invoices=4000, customers=10, items=10, latency_ms=3) as emu:
        env = dict(os.environ, **emu.env(), QBO_TOKEN_STORE=str(tmp_path / "t.json"))
        cmd = [
            sys.executable,
            "-m",
            "qbo_rs",
            "sync",
            "invoice",
            "--page-size",
            "40",
            "--no-progress",
            "--sink",
            sink,
            "--data-dir",
            str(tmp_path),
        ]
        if sink != "txt":
            cmd += ["--dsn", DSN, "--pg-schema", schema]
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert first.returncode == 0, first.stderr
        # Enough edits for a reconciliation (a full read), and deletions to find in it.
        for rid in range(1, 1201):
            emu.edit("Invoice", str(rid))
        gone = {"1500", "2500", "3500"}
        for rid in gone:
            emu.delete("invoice", rid)
        next_second()
        killed = 0
        for delay in (0.8, 1.6):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.wait()
        assert killed >= 1
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        assert "sync (reconciliation" in done.stderr and "Validation: Integrity Check Passed" in done.stderr, (
            done.stderr[-2000:]
        )
        for name, (live, deleted) in sink_states(sink, tmp_path, schema).items():
            assert live == truth_versions(emu, "Invoice"), name
            assert deleted == gone, name
