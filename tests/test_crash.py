"""kill -9 in the middle of a backfill, then a re-run: the truth, no duplicate, no torn line."""

from __future__ import annotations

from pathlib import Path

from conftest import backfill_args, cli_env, landed_versions, read_raw, run_cli, sigkill_mid_runs, truth_versions

from qbo_rs.testing import QboEmulator


def test_sigkill_mid_backfill_then_rerun(tmp_path: Path):
    data = tmp_path / "data"
    with QboEmulator(seed=9, invoices=6000, customers=10, items=10, latency_ms=3) as emu:
        env = cli_env(emu, tmp_path)
        args = backfill_args(
            "invoice", "--chunk-days", "30", "--page-size", "40", "--data-dir", str(data), "--no-progress"
        )
        kills = sigkill_mid_runs(args, env, (0.6, 1.1, 1.7))
        assert kills >= 1, "the backfill finished before it could be killed: make it bigger"
        done = run_cli(args, env, timeout=240)
        assert done.returncode == 0, done.stderr
        landed = read_raw(data / "invoices.txt")
        assert landed_versions(landed) == truth_versions(emu, "Invoice")
        assert "Validation: Integrity Check Passed" in done.stderr
