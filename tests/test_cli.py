"""The qbo-rs command line: plan, backfill, emulator, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import backfill_args, cli_env, landed_versions, read_raw, run_cli, truth_versions

from qbo_rs.testing import QboEmulator


def test_plan_prints_windows():
    out = run_cli(["plan", "--start", "2025-01-01", "--end", "2025-03-01", "--chunk-days", "50"])
    assert out.returncode == 0
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "invoice_backfill_2025-01-01\t2025-01-01\t2025-02-20",
        "invoice_backfill_2025-02-20\t2025-02-20\t2025-03-01",
    ]


def test_bad_arguments_exit_2_with_one_line():
    out = run_cli(["backfill", "invoice", "--start", "2025-02-01", "--end", "2025-01-01"])
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("qbo-rs: ")
    out = run_cli(["backfill", "bill", "--start", "2025-01-01", "--end", "2025-02-01"])
    assert out.returncode == 2 and "unknown entity" in out.stderr


def test_missing_credentials_are_named(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
    out = run_cli(
        ["backfill", "item", "--start", "2025-01-01", "--end", "2025-02-01", "--data-dir", str(tmp_path)], env=env
    )
    assert out.returncode == 2 and "QBO_CLIENT_ID" in out.stderr
    assert not any(tmp_path.iterdir())


def test_backfill_case_insensitive_entity(tmp_path: Path):
    with QboEmulator(seed=2, invoices=100, customers=60, items=10) as emu:
        env = cli_env(emu, tmp_path)
        out = run_cli(
            backfill_args("CUSTOMER", "--data-dir", str(tmp_path / "d")),
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert "Total customers descargadas: 60" in out.stderr
        assert landed_versions(read_raw(tmp_path / "d" / "customers.txt")) == truth_versions(emu, "Customer")


def test_estimate_counts_only_and_max_requests_refuses_with_exit_2(tmp_path: Path):
    import json

    with QboEmulator(seed=2, invoices=2500, customers=5, items=5) as emu:
        env = cli_env(emu, tmp_path)
        window = ["--start", "2015-01-01", "--end", "2025-11-01", "--chunk-days", "1", "--page-size", "100"]
        out = run_cli(["estimate", "invoice", *window, "--json"], env=env)
        assert out.returncode == 0, out.stderr
        estimate = json.loads(out.stdout)
        assert {"records", "windows", "streams", "requests", "minutes"} <= set(estimate)
        assert estimate["records"] == 2500 and estimate["windows"] == 3957
        assert emu.stats()["query_requests"] == estimate["count_requests"] == 1
        text = run_cli(["estimate", "invoice", *window], env=env)
        assert text.returncode == 0 and f"{estimate['requests']} request(s)" in text.stdout, text.stdout
        before = emu.stats()["query_requests"]
        refused = run_cli(
            ["backfill", "invoice", *window, "--max-requests", "5", "--data-dir", str(tmp_path / "d")], env=env
        )
        assert refused.returncode == 2, refused.stderr
        assert f"needs about {estimate['requests']} request(s)" in refused.stderr and "max_requests=5" in refused.stderr
        assert emu.stats()["query_requests"] - before == 1, "only the plan's count was sent"
        done = run_cli(
            [
                "backfill",
                "invoice",
                *window,
                "--max-requests",
                str(estimate["requests"]),
                "--data-dir",
                str(tmp_path / "d"),
                "--no-progress",
            ],
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert (
            f"{estimate['requests']} request(s) (" in done.stderr and f"estimated {estimate['requests']}" in done.stderr
        )


def test_backfill_shares_the_realm_budget_where_told(tmp_path: Path):
    with QboEmulator(seed=2, invoices=20, customers=5, items=5) as emu:
        env = cli_env(emu, tmp_path, QBO_LIMITER_DIR=str(tmp_path / "env-dir"))
        args = backfill_args("item", "--no-progress")
        out = run_cli(args + ["--data-dir", str(tmp_path / "a"), "--limiter-dir", str(tmp_path / "flag-dir")], env=env)
        assert out.returncode == 0, out.stderr
        assert [p.name.startswith(f"realm-{emu.realm_id}-") for p in (tmp_path / "flag-dir").iterdir()] == [True]
        assert not (tmp_path / "env-dir").exists()
        out = run_cli(args + ["--data-dir", str(tmp_path / "b")], env=env)
        assert out.returncode == 0, out.stderr
        assert len(list((tmp_path / "env-dir").iterdir())) == 1
        out = run_cli(
            args + ["--data-dir", str(tmp_path / "c"), "--process-limiter", "--limiter-dir", str(tmp_path / "x")],
            env=env,
        )
        assert out.returncode == 2 and "cannot be used with" in out.stderr
        (tmp_path / "env-dir" / next((tmp_path / "env-dir").iterdir()).name).unlink()
        out = run_cli(args + ["--data-dir", str(tmp_path / "c"), "--process-limiter"], env=env)
        assert out.returncode == 0, out.stderr
        assert not any((tmp_path / "env-dir").iterdir())


def test_the_engine_allocates_with_jemalloc_as_configured():
    # src/allocator.rs: the engine's memory is jemalloc's, one arena, unused pages returned after
    # 100 ms (what keeps the backfill's peak RSS flat); jemalloc prints its options at exit when asked.
    env = dict(os.environ, _RJEM_MALLOC_CONF="stats_print:true")
    code = "import qbo_rs; qbo_rs.plan_windows('2025-01-01', '2025-03-01')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    for option in ("opt.narenas: 1", "opt.dirty_decay_ms: 100", "opt.muzzy_decay_ms: 0"):
        assert option in out.stderr, option
