"""Bad input gets a clear, typed error before any request or write."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import backfill_args, cli_env, run_cli

import qbo_rs
from qbo_rs.exceptions import ConfigError, QboError
from qbo_rs.testing import QboEmulator

GOOD = dict(start="2024-01-01", end="2024-03-01")

CASES = [
    ("end before start", dict(start="2024-03-01", end="2024-01-01"), "after"),
    ("empty range", dict(start="2024-03-01", end="2024-03-01"), "after"),
    ("day-first date", dict(start="01/02/2024"), "ISO"),
    ("impossible date", dict(start="2024-02-30"), "ISO"),
    ("words for a date", dict(end="yesterday"), "ISO"),
    ("empty date", dict(start=""), "ISO"),
    ("leap second", dict(end="2016-12-31T23:59:60Z"), "leap second"),
    ("page_size zero", dict(page_size=0), "page_size"),
    ("page_size negative", dict(page_size=-5), "page_size"),
    ("page_size above QBO max", dict(page_size=1001), "page_size"),
    ("chunk_days zero", dict(chunk_days=0), "chunk_days"),
    ("chunk_days negative", dict(chunk_days=-1), "chunk_days"),
    ("unknown entity", dict(entity="bill"), "unknown entity"),
    ("injection in entity", dict(entity="Invoice WHERE 1=1"), "unknown entity"),
    ("unknown sink", dict(sink="s3"), "sink"),
    ("unknown filter field", dict(filter_field="Balance"), "filter field"),
    ("TxnDate on a list entity", dict(entity="customer", filter_field="TxnDate"), "TxnDate"),
    ("unknown window label", dict(windows=["invoice_backfill_1999-01-01"]), "no window"),
    ("too many windows", dict(start="1700-01-01", end="2100-01-01", chunk_days=1), "chunk_days"),
    ("concurrency zero", dict(max_concurrent_windows=0), "max_concurrent_windows"),
    ("memory budget zero", dict(max_buffer_mb=0), "max_buffer_mb"),
    ("page_size a boolean", dict(page_size=True), "page_size must be a whole number"),
    ("page_size a word", dict(page_size="abc"), "page_size must be a whole number"),
    ("page_size beyond any integer type", dict(page_size=2**70), "page_size is out of range"),
    ("data_dir empty", dict(data_dir=""), "data_dir is empty"),
    ("fsync a string", dict(fsync="no"), "fsync must be True or False"),
    ("misspelt option", dict(fsnyc=False), 'unknown option "fsnyc"'),
]


@pytest.mark.parametrize("name,override,needle", CASES, ids=[c[0] for c in CASES])
def test_backfill_rejects(emulator: QboEmulator, client_factory, tmp_path: Path, name, override, needle):
    client = client_factory(emulator)
    args = dict(entity="invoice", **GOOD, data_dir=tmp_path / "data")
    args.update(override)
    entity = args.pop("entity")
    with pytest.raises(ConfigError) as e:
        client.backfill(entity, args.pop("start"), args.pop("end"), **args)
    assert needle.lower() in str(e.value).lower(), str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, QboError)
    assert not (tmp_path / "data").exists(), "nothing may be written for bad input"
    assert sum(sum(by_status.values()) for by_status in emulator.stats()["requests"].values()) == 0, (
        "no request may be sent for bad input"
    )


CREDENTIAL_CASES = [
    ("missing realm", dict(realm_id=""), "QBO_REALM_ID"),
    ("realm with a path", dict(realm_id="123/../456"), "realm_id"),
    ("missing secret", dict(client_secret=" "), "QBO_CLIENT_SECRET"),
    ("missing refresh token", dict(refresh_token=""), "QBO_REFRESH_TOKEN"),
    ("bad environment", dict(environment="staging"), "sandbox or production"),
    ("base url not a url", dict(base_url="not a url"), "base_url"),
    ("base url ftp", dict(base_url="ftp://example.com"), "http"),
    ("base url with a password", dict(base_url="http://user:Secr3t@127.0.0.1:8765"), "user name or password"),
    ("token url with a password", dict(token_url="https://user:Secr3t@oauth.example/token"), "user name or password"),
    ("base url with a query", dict(base_url="http://127.0.0.1:8765/?minorversion=75"), "query string"),
    ("token url with a fragment", dict(token_url="https://oauth.example/token#x"), "fragment"),
]


@pytest.mark.parametrize("name,override,needle", CREDENTIAL_CASES, ids=[c[0] for c in CREDENTIAL_CASES])
def test_credentials_reject(name, override, needle):
    args = dict(client_id="ABc", client_secret="s", refresh_token="r", realm_id="123")
    args.update(override)
    with pytest.raises(ConfigError, match=needle) as refused:
        qbo_rs.Credentials(**args)
    assert "Secr3t" not in str(refused.value)


def test_from_env_names_every_missing_variable():
    with pytest.raises(ConfigError) as e:
        qbo_rs.Credentials.from_env({"QBO_CLIENT_ID": "x"})
    for name in ("QBO_CLIENT_SECRET", "QBO_REFRESH_TOKEN", "QBO_REALM_ID"):
        assert name in str(e.value)


def test_client_options_rejected(emulator: QboEmulator):
    for bad in (
        dict(requests_per_minute=0),
        dict(max_in_flight=-1),
        dict(max_retries=-1),
        dict(timeout=0),
        dict(backoff_base=float("nan")),
    ):
        with pytest.raises(ConfigError):
            qbo_rs.QboClient(emulator.credentials(), token_store=None, **bad)


def test_plan_windows_rejects():
    with pytest.raises(ConfigError):
        qbo_rs.plan_windows("2024-02-01", "2024-01-01")
    with pytest.raises(ConfigError):
        qbo_rs.plan_windows(20240101, "2024-02-01")  # type: ignore[arg-type]


def test_query_values_are_escaped(emulator: QboEmulator, client_factory):
    # A hostile value cannot reach a statement: entities are an allowlist and dates parsed.
    client = client_factory(emulator)
    with pytest.raises(ConfigError):
        client.count("Invoice'; --", "2024-01-01", "2024-02-01")


def test_a_data_dir_that_is_a_file_is_a_config_error_with_exit_2(emulator: QboEmulator, client_factory, tmp_path: Path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        client_factory(emulator).backfill("item", GOOD["start"], GOOD["end"], data_dir=a_file)
    args = backfill_args("item", "--data-dir", str(a_file), "--no-progress", start=GOOD["start"], end=GOOD["end"])
    cli = run_cli(args, cli_env(emulator, tmp_path), timeout=60)
    assert cli.returncode == 2 and "is a file, not a folder" in cli.stderr, cli.stderr
    assert a_file.read_text() == "x"
