"""Rust log events reach Python logging with the runbook's lines; no token ever does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from conftest import RANGE_END, RANGE_START, backfill_args, run_cli

import qbo_rs
from qbo_rs.testing import QboEmulator


def test_seed_log_lines_and_no_tokens(caplog, tmp_path: Path):
    caplog.set_level(logging.DEBUG)
    with QboEmulator(
        seed=8,
        invoices=400,
        customers=10,
        items=10,
        refresh_rotate_after_secs=0,
        access_token_ttl_secs=2,
        force_429_next=2,
    ) as emu:
        creds = emu.credentials()
        secrets = {emu.native.client_secret, emu.native.refresh_token}
        client = qbo_rs.QboClient(creds, token_store=tmp_path / "t.json", backoff_base=0.01)
        report = client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=1000, data_dir=tmp_path)
        secrets.add(json.loads((tmp_path / "t.json").read_text())["access_token"])
        secrets.add(json.loads((tmp_path / "t.json").read_text())["refresh_token"])
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("qbo_rs")]
    text = "\n".join(messages)
    assert any(m.startswith("Rango ") and " -> " in m and m.endswith(" filas") for m in messages), text
    assert f"Total invoices descargadas: {report.total_rows}" in messages
    assert "Validation: Integrity Check Passed" in messages
    assert any(m.startswith("API Limit: 429") for m in messages)
    for secret in secrets:
        assert secret and secret not in text
    assert secrets.isdisjoint({repr(creds), repr(client)})


def test_failed_window_logs_alert(emulator: QboEmulator, client_factory, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    emulator.set_knobs(force_429_next=100)
    report = client_factory(emulator, max_retries=1).backfill(
        "item", RANGE_START, RANGE_END, chunk_days=5000, data_dir=tmp_path, raise_on_failure=False
    )
    assert not report.ok
    assert any(r.getMessage().startswith("Validation: [ALERT]") for r in caplog.records)


def test_credentials_repr_is_redacted():
    creds = qbo_rs.Credentials("ABCDEFGHIJ", "very-secret-value", "AB11-refresh-token-value", "123")
    shown = repr(creds)
    assert "very-secret-value" not in shown and "AB11-refresh-token-value" not in shown
    assert "ABCDEFGHIJ" not in shown and "ABCD***" in shown


def test_a_dsn_password_with_a_slash_or_question_mark_is_never_echoed(tmp_path: Path):
    import os

    import pytest

    from qbo_rs.exceptions import ConfigError

    for dsn in ("postgresql://rt:rtpass/Secr3t@db.example/raw", "postgresql://rt:rtpass?Secr3t@db.example/raw"):
        with pytest.raises(ConfigError) as refused:
            qbo_rs.PostgresWriter(dsn)
        message = str(refused.value)
        assert "percent-encode" in message and "%2F" in message
        assert "rtpass" not in message and "Secr3t" not in message, message
        env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
        env.update(QBO_CLIENT_ID="x", QBO_CLIENT_SECRET="y", QBO_REFRESH_TOKEN="z", QBO_REALM_ID="1")
        args = backfill_args(
            "item",
            "--sink",
            "postgres",
            "--dsn",
            dsn,
            "--data-dir",
            str(tmp_path),
            start="2025-01-01",
            end="2025-02-01",
        )
        cli = run_cli(args, env, timeout=60)
        assert cli.returncode == 2 and "percent-encode" in cli.stderr, cli.stderr
        assert "rtpass" not in cli.stderr + cli.stdout and "Secr3t" not in cli.stderr + cli.stdout
