"""Faults survived: 429 storms (JSON and XML), 5xx, resets, slow responses, malformed
bodies, access-token expiry mid-run, refresh-token rotation persisted across runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RANGE_END, RANGE_START, landed_versions, read_raw, truth_versions

import qbo_rs
from qbo_rs.exceptions import AuthError, BackfillError, RateLimitError
from qbo_rs.testing import QboEmulator


@pytest.mark.parametrize("body", ["Json", "Xml"])
def test_429_storm_is_survived(emulator: QboEmulator, client_factory, tmp_path: Path, body):
    emulator.set_knobs(force_429_next=4, throttle_body=body)
    report = client_factory(emulator).backfill("customer", RANGE_START, RANGE_END, data_dir=tmp_path)
    assert report.ok and report.throttled >= 4 and report.retries >= 4
    assert landed_versions(read_raw(tmp_path / "customers.txt")) == truth_versions(emulator, "Customer")


def test_a_storm_by_time_is_waited_out_with_backoff(emulator: QboEmulator, client_factory, tmp_path: Path):
    """QuickBooks throttles for a stretch of time, not a number of requests: a 3 s storm is
    outlasted by the real backoff (about 1, 2, 4 s), and nothing is lost."""
    emulator.set_knobs(throttle_for_secs=3)
    report = client_factory(emulator, backoff_base=1.0).backfill("customer", RANGE_START, RANGE_END, data_dir=tmp_path)
    assert report.ok and report.throttled >= 2 and report.duration_s >= 2.5, report.to_dict()
    assert landed_versions(read_raw(tmp_path / "customers.txt")) == truth_versions(emulator, "Customer")


def test_retry_after_is_honoured(emulator: QboEmulator, client_factory, tmp_path: Path):
    emulator.set_knobs(force_429_next=1, retry_after_secs=1)
    report = client_factory(emulator, backoff_base=10.0).backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path)
    # With a 10 s backoff base a wait of ~1 s can only come from Retry-After.
    assert report.ok and report.duration_s < 8


@pytest.mark.parametrize("kinds", [["Http500"], ["Http503"], ["Reset"], ["Malformed"], ["Fault200"], ["Slow"]])
def test_faults_are_survived(emulator: QboEmulator, client_factory, tmp_path: Path, kinds):
    emulator.set_knobs(fault_rate=0.3, fault_kinds=kinds, slow_ms=1500)
    client = client_factory(emulator, timeout=1.0, max_retries=8)
    report = client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=200, data_dir=tmp_path)
    assert report.ok and report.retries > 0
    assert emulator.stats()["faults_injected"] > 0
    assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emulator, "Invoice")


def test_retries_exhausted_fail_the_window_cleanly(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator, max_retries=2)
    client.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path)
    before = (tmp_path / "items.txt").read_bytes()
    emulator.set_knobs(force_429_next=10_000)
    with pytest.raises(BackfillError) as failure:
        client.backfill("item", RANGE_START, RANGE_END, chunk_days=2000, data_dir=tmp_path)
    report = failure.value.report
    assert not report.ok and report.failed_windows
    assert "429" in (report.windows[0].error or "")
    assert (tmp_path / "items.txt").read_bytes() == before, "a failed window must not touch what is written"


def test_access_token_expiry_mid_run(client_factory, tmp_path: Path):
    with QboEmulator(seed=3, invoices=2500, customers=10, items=10, access_token_ttl_secs=1, latency_ms=20) as emu:
        report = client_factory(emu, max_in_flight=2).backfill(
            "invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=50, data_dir=tmp_path
        )
        assert report.ok
        assert emu.stats()["token_refreshes"] >= 2, "the run outlived its first access token"
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")


def test_natural_expiry_is_refreshed_through_by_a_client_without_a_token_store(tmp_path: Path):
    """Access tokens that really expire (a 2 s lifetime, nothing revoked by the test), as they do
    on QuickBooks after their stated expires_in: qbo_rs, holding its tokens in memory only,
    refreshes by itself across several lifetimes and the backfill lands every record."""
    with QboEmulator(seed=5, invoices=1200, customers=10, items=10, access_token_ttl_secs=2, latency_ms=80) as emu:
        client = qbo_rs.QboClient(
            emu.credentials(), token_store=None, backoff_base=0.01, requests_per_minute=600_000, max_in_flight=1
        )
        report = client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=20, data_dir=tmp_path)
        stats = emu.stats()
        assert report.ok and report.duration_s >= 4.5, report.to_dict()
        assert stats["token_refreshes"] >= 3, "each 2 s token was replaced by the client itself"
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")


def test_faults_by_position_are_the_same_for_two_clients_whatever_they_send(client_factory, tmp_path: Path):
    """With fault_first_k the first K pages and the first K counts fault, taking fault_kinds in
    turn: two runs that send different numbers of requests (pages of 200 and of 50) meet the
    same faults, and both land every record. (The fault_rate dice would give the run with more
    requests more faults.)"""
    with QboEmulator(seed=12, invoices=1500, customers=10, items=10) as emu:
        met = []
        for page_size in (200, 50):
            emu.set_knobs(fault_first_k=0)
            emu.set_knobs(fault_first_k=3, fault_kinds=["Http500", "Reset", "Fault200"])  # positions count from here
            before = emu.stats()["faults_by_request"]
            client = client_factory(emu, max_retries=8)
            data = tmp_path / str(page_size)
            report = client.backfill(
                "invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=page_size, data_dir=data
            )
            after = emu.stats()["faults_by_request"]
            assert report.ok and report.retries >= 6, report.to_dict()
            assert landed_versions(read_raw(data / "invoices.txt")) == truth_versions(emu, "Invoice")
            new = {kind: after[kind] - before.get(kind, 0) for kind in after}
            met.append(({kind: n for kind, n in new.items() if n}, report.requests))
        (faults_200, requests_200), (faults_50, requests_50) = met
        assert requests_50 > requests_200
        assert faults_200 == faults_50 == {"query_page": 3, "query_count": 3}


def test_revoked_access_token_refreshes_once(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    client.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path)
    emulator.expire_access_tokens()
    assert client.count("item", RANGE_START, RANGE_END) == len(emulator.truth("Item"))


def test_rotation_is_persisted_and_reused(tmp_path: Path):
    store = tmp_path / "state" / "tokens.json"
    rotated = []
    with QboEmulator(seed=4, invoices=50, customers=10, items=10, refresh_rotate_after_secs=0) as emu:
        first = qbo_rs.QboClient(
            emu.credentials(), token_store=store, on_token_rotated=lambda realm, tok: rotated.append((realm, tok))
        )
        first.count("invoice", RANGE_START, RANGE_END)
        saved = json.loads(store.read_text())
        assert oct(store.stat().st_mode & 0o777) == "0o600"
        assert saved["refresh_token"] != emu.native.refresh_token, "the emulator rotated the refresh token"
        assert rotated == [(emu.realm_id, saved["refresh_token"])]
        # The configured token is dead now (grace 0): only the persisted one can work.
        emu.expire_access_tokens()
        second = qbo_rs.QboClient(emu.credentials(), token_store=store)
        assert second.count("invoice", RANGE_START, RANGE_END) == 50
        # Without the store the original token is rejected: rotation really happened.
        with pytest.raises(AuthError, match="invalid_grant"):
            qbo_rs.QboClient(emu.credentials(), token_store=None).count("invoice", RANGE_START, RANGE_END)


def test_persistent_throttle_raises_rate_limit_error(emulator: QboEmulator, client_factory):
    emulator.set_knobs(force_429_next=10_000)
    with pytest.raises(RateLimitError) as e:
        client_factory(emulator, max_retries=1).count("invoice", RANGE_START, RANGE_END)
    assert e.value.attempts == 2


def test_a_zero_throttle_means_no_limit_as_on_the_command_line(client_factory, tmp_path: Path):
    with QboEmulator(seed=4, invoices=400, customers=10, items=10, throttle_per_minute=0, max_in_flight=0) as emu:
        report = client_factory(emu).backfill(
            "invoice", RANGE_START, RANGE_END, chunk_days=200, page_size=20, data_dir=tmp_path
        )
        assert report.ok and report.throttled == 0 and report.requests > 20
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")
