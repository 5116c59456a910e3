"""Plan by the calendar, read by the data: requests follow the records, not the windows."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import landed_versions, read_raw, truth_versions

import qbo_rs
from qbo_rs.exceptions import RequestBudgetError
from qbo_rs.testing import QboEmulator

# The emulator's data spans 2015-01-01 .. 2025-10-31; a range that ends before "now" is closed.
CLOSED_END = "2025-11-01"


def sent(emu: QboEmulator) -> int:
    return int(emu.stats()["query_requests"])


def test_a_century_of_windows_over_300_invoices_costs_two_requests(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=8, invoices=300, customers=5, items=5) as emu:
        client = client_factory(emu)
        report = client.backfill(
            "invoice", "2000-01-01", "2100-01-01", data_dir=tmp_path
        )  # defaults: 50 days, page 1000
        assert len(report.windows) == 731
        assert report.requests == sent(emu) == 2, report.requests_by_kind  # one COUNT, one page
        assert report.requests_by_kind["count"] == 1 and report.requests_by_kind["page"] == 1
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")
        # Every window still has its line and its rows, attributed by its filter timestamp.
        assert sum(w.rows_fetched for w in report.windows) == 300
        assert sum(w.rows_written for w in report.windows) == 300


@pytest.mark.parametrize("chunk_days", [1, 50, 3650])
def test_requests_follow_the_data_whatever_the_windows_and_the_estimate_says_so(
    client_factory, tmp_path: Path, chunk_days: int
) -> None:
    with QboEmulator(seed=12, invoices=9000, customers=5, items=5) as emu:
        client = client_factory(emu)
        estimate = client.estimate("invoice", "2015-01-01", CLOSED_END, chunk_days=chunk_days, page_size=100)
        assert estimate.records == len(truth_versions(emu, "Invoice"))
        assert estimate.streams == 2, estimate.to_dict()  # 90 pages: enough for a second stream
        counted = sent(emu)
        assert counted == estimate.count_requests, "an estimate spends only its counts"
        report = client.backfill(
            "invoice", "2015-01-01", CLOSED_END, chunk_days=chunk_days, page_size=100, data_dir=tmp_path
        )
        assert report.ok
        assert report.requests == sent(emu) - counted, report.requests_by_kind
        # The plan foresees every request but those of tie groups (seconds holding more than half
        # a page, which the emulator's bulk imports make): their counts and pages, and a page of
        # the pass more or less for each (the group's records come in its own pages).
        assert report.tie_groups > 0, "the data must exercise ties for this check to mean anything"
        beyond = report.requests - report.tie_requests - estimate.requests
        assert abs(beyond) <= report.tie_groups, (beyond, report.to_dict(), estimate.to_dict())
        floor = -(-estimate.records // 100)
        assert report.requests - report.tie_requests <= floor * 1.05 + 2 + report.tie_groups, (report.requests, floor)
        assert report.estimate is not None and report.estimate.requests == estimate.requests
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")
        per_window = {w.label: w.rows_fetched for w in report.windows}
        assert sum(per_window.values()) == estimate.records and len(per_window) == estimate.windows


def test_without_ties_the_estimate_is_exact(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=12, invoices=9000, customers=5, items=5) as emu:
        client = client_factory(emu)
        estimate = client.estimate("invoice", "2015-01-01", CLOSED_END, chunk_days=1)  # pages of 1000
        report = client.backfill("invoice", "2015-01-01", CLOSED_END, chunk_days=1, data_dir=tmp_path)
        assert report.tie_groups == 0 and report.requests == estimate.requests == 1 + 10, report.to_dict()


def test_max_requests_below_the_estimate_refuses_before_any_page(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=12, invoices=3000, customers=5, items=5) as emu:
        client = client_factory(emu)
        with pytest.raises(RequestBudgetError) as refused:
            client.backfill("invoice", "2015-01-01", CLOSED_END, page_size=100, max_requests=10, data_dir=tmp_path)
        assert refused.value.estimate.requests > 10 and "max_requests=10" in str(refused.value)
        assert isinstance(refused.value, qbo_rs.exceptions.ConfigError)
        stats = emu.stats()
        assert sent(emu) == refused.value.estimate.count_requests, "only the plan's counts were sent"
        assert not (tmp_path / "invoices.txt").exists() or (tmp_path / "invoices.txt").stat().st_size == 0
        assert stats["query_requests"] == sent(emu)
        # At the estimate it runs.
        report = client.backfill(
            "invoice",
            "2015-01-01",
            CLOSED_END,
            page_size=100,
            data_dir=tmp_path,
            max_requests=refused.value.estimate.requests,
        )
        assert report.ok


@pytest.mark.parametrize("chunk_days,page_size", [(400, 50), (1, 20)])
def test_edits_across_windows_and_streams_lose_nothing(
    client_factory, tmp_path: Path, chunk_days: int, page_size: int
) -> None:
    """Records edited while streams read move to "now": into a later window, often another
    stream's; the range reaching "now" is read last, so each ends where it now belongs."""
    with QboEmulator(seed=5, invoices=3000, customers=50, items=20, edit_rate=0.25) as emu:
        client = client_factory(emu)
        end = "2100-01-01"
        report = client.backfill(
            "invoice",
            "2015-01-01",
            end,
            chunk_days=chunk_days,
            page_size=page_size,
            data_dir=tmp_path,
            max_concurrent_windows=4,
        )
        assert report.ok, report.failed_windows
        assert emu.stats()["edits"] > 0
        if page_size == 20:
            assert report.estimate is not None and report.estimate.streams > 1, report.estimate.to_dict()
        emu.set_knobs(edit_rate=0.0)
        landed = read_raw(tmp_path / "invoices.txt")
        assert set(landed) == set(truth_versions(emu, "Invoice")), "an id was lost while records were edited"
        client.backfill("invoice", "2015-01-01", end, chunk_days=chunk_days, page_size=page_size, data_dir=tmp_path)
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")


def test_empty_windows_get_one_warning(client_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with QboEmulator(seed=8, invoices=40, customers=5, items=5) as emu:
        with caplog.at_level("INFO", logger="qbo_rs"):
            report = client_factory(emu).backfill(
                "invoice", "2015-01-01", "2015-03-01", chunk_days=1, data_dir=tmp_path
            )
    empty = [w for w in report.windows if w.rows_fetched == 0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert empty and len(warnings) == 1 and f"{len(empty)} window(s) returned 0 rows" in warnings[0], warnings
    rango = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Rango ")]
    assert len(rango) == len(report.windows), "one Rango line per window"
