"""A backfill shared out between workers (Mage's children): plan_shares counts and cuts the
plan, stage_share fetches one share with the plan's counts, export_share writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import landed_versions, read_raw, truth_versions

import qbo_rs
from qbo_rs.exceptions import BackfillError, ConfigError, RequestBudgetError
from qbo_rs.testing import QboEmulator

# The emulator's data spans 2015-01-01 .. 2025-10-31; a range that ends before "now" is closed.
START, CLOSED_END = "2015-01-01", "2025-11-01"


def sent(emu: QboEmulator) -> int:
    return int(emu.stats()["query_requests"])


def test_shares_tile_the_plan_and_together_land_the_truth_in_about_the_floor(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=12, invoices=20000, customers=5, items=5) as emu:
        client = client_factory(emu)
        # 200 pages of 100: three streams (one more per 80 pages), so three shares.
        plan = client.plan_shares("invoice", START, CLOSED_END, chunk_days=1, page_size=100, max_shares=3)
        counted = sent(emu)
        assert counted == plan.estimate.count_requests, "planning spends only its counts"
        shares = plan.shares
        assert len(shares) == 3 and [s.index for s in shares] == [0, 1, 2] and {s.of for s in shares} == {3}
        labels = [label for s in shares for label in s.window_labels]
        assert labels == [w.label for w in qbo_rs.plan_windows(START, CLOSED_END, 1, "invoice")], (
            "every window in one share, in order"
        )
        assert sum(s.records for s in shares) == plan.estimate.records == len(truth_versions(emu, "Invoice"))
        assert all(a.end == b.start for a, b in zip(shares, shares[1:]))

        stage, data = tmp_path / "stage", tmp_path / "data"
        requests = 0
        handles = []
        for share in shares:
            # A share travels to its worker as JSON (a Mage block output).
            staged = client.stage_share(share.to_json(), stage_dir=stage, run_id="run-1")
            assert staged.ok and staged.reused == 0 and not staged.exported and staged.label == share.label
            assert staged.report.total_rows == share.records
            requests += staged.report.requests
            handles.append(staged)
        assert requests == sent(emu) - counted
        # A stream's pages, plus a request more for each tie group (seconds holding more than
        # half a page): no count again, no request per window.
        floor = -(-plan.estimate.records // 100)
        pages = sum(s.page_requests for s in shares)
        ties = sum(h.report.tie_requests for h in handles)
        assert requests - ties <= pages <= floor + len(shares), (requests, ties, pages, floor)
        assert plan.estimate.requests <= floor * 1.05 + 2 + plan.estimate.count_requests

        written = 0
        for staged in handles:
            report = qbo_rs.export_share(staged, data_dir=data)
            assert report.ok and report.requests == 0
            assert [w.label for w in report.windows] == [w.label for w in staged.report.windows]
            written += sum(w.rows_written for w in report.windows)
        assert written == plan.estimate.records
        assert landed_versions(read_raw(data / "invoices.txt")) == truth_versions(emu, "Invoice")
        assert sorted(p.name for p in stage.rglob("*") if p.is_file() and p.suffix != ".lock") == sorted(
            f"{s.label}.receipt" for s in shares
        ), "written stages leave only receipts"


def test_a_share_fetched_or_exported_again_with_its_run_id_asks_nothing_and_writes_nothing(
    client_factory, tmp_path: Path
) -> None:
    with QboEmulator(seed=3, invoices=3000, customers=5, items=5) as emu:
        client = client_factory(emu)
        (share,) = client.plan_shares("invoice", START, CLOSED_END, chunk_days=50).shares
        stage, data = tmp_path / "stage", tmp_path / "data"
        first = client.stage_share(share, stage_dir=stage, run_id="r")
        before = sent(emu)
        again = client.stage_share(share, stage_dir=stage, run_id="r")
        assert sent(emu) == before and again.reused == len(share) and again.report.requests == 0
        assert again.manifest == first.manifest
        assert [w.rows_fetched for w in again.report.windows] == [w.rows_fetched for w in first.report.windows]

        exported = qbo_rs.export_share(first, data_dir=data)
        text = (data / "invoices.txt").read_bytes()
        repeated = qbo_rs.export_share(first.manifest, data_dir=data)
        assert (data / "invoices.txt").read_bytes() == text
        assert [w.to_dict() | {"duration_s": 0} for w in repeated.windows] == [
            w.to_dict() | {"duration_s": 0} for w in exported.windows
        ]
        # The fetch after the export finds the receipt: still nothing asked.
        third = client.stage_share(share, stage_dir=stage, run_id="r")
        assert third.exported and third.reused == len(share) and sent(emu) == before
        # A sink the export did not write is refused (the stage is gone).
        with pytest.raises(ConfigError, match="run its fetch step again"):
            qbo_rs.export_share(first, sink="both", data_dir=data, dsn="postgresql://u:p@127.0.0.1:9/db")
        # Another share under the same run id and label is refused, not mixed up.
        other = client.plan_shares("invoice", START, CLOSED_END, chunk_days=49).shares[0]
        if other.label == share.label:
            with pytest.raises(ConfigError, match="use another run id"):
                client.stage_share(other, stage_dir=stage, run_id="r")


def test_a_refetch_reads_only_the_windows_no_attempt_staged(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=5, invoices=4000, customers=5, items=5) as emu:
        client = client_factory(emu)
        (share,) = client.plan_shares("invoice", START, CLOSED_END, chunk_days=365).shares
        stage, data = tmp_path / "stage", tmp_path / "data"
        first = client.stage_share(share, stage_dir=stage, run_id="r")
        # As if the windows of 2020 and 2021 had failed: drop them from the manifest.
        manifest = json.loads(first.manifest.read_text())
        lost = {w["label"] for w in manifest["windows"] if w["start"][:4] in ("2020", "2021")}
        assert len(lost) == 2
        for attempt in manifest["attempts"]:
            attempt["parts"] = [p for p in attempt["parts"] if p["label"] not in lost]
        first.manifest.write_text(json.dumps(manifest))
        with pytest.raises(ConfigError, match="2 of its 11 window"):
            qbo_rs.export_share(first, data_dir=data)

        before = sent(emu)
        second = client.stage_share(share, stage_dir=stage, run_id="r")
        assert second.ok and second.reused == len(share) - 2
        fetched = {w.label: w.rows_fetched for w in second.report.windows if w.label in lost}
        in_lost = sum(fetched.values())
        # Only those two windows were read: their pages and the closing count of the narrowed stream.
        assert sent(emu) - before == second.report.requests <= -(-in_lost // 1000) + 1 + 1 + second.report.tie_requests
        assert len(json.loads(second.manifest.read_text())["attempts"]) == 2
        report = qbo_rs.export_share(second, data_dir=data)
        assert report.ok and sum(w.rows_written for w in report.windows) == share.records
        assert landed_versions(read_raw(data / "invoices.txt")) == truth_versions(emu, "Invoice")


def test_a_failed_share_keeps_what_it_read_and_a_retry_reads_the_rest(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=6, invoices=2000, customers=5, items=5) as emu:
        client = client_factory(emu, max_retries=0)
        (share,) = client.plan_shares("invoice", START, CLOSED_END).shares
        stage, data = tmp_path / "stage", tmp_path / "data"
        emu.set_knobs(fault_rate=1.0)
        with pytest.raises(BackfillError) as failed:
            client.stage_share(share, stage_dir=stage, run_id="r")
        report = failed.value.report
        assert report.failed_windows, "the failure names its windows"
        kept = len(report.windows) - len(report.failed_windows)
        with pytest.raises(ConfigError, match="not staged|no staged share"):
            qbo_rs.export_share(stage / "invoices" / "r" / f"{share.label}.share.json", data_dir=data)
        emu.set_knobs(fault_rate=0.0)
        retried = client.stage_share(share, stage_dir=stage, run_id="r")
        assert retried.ok and retried.reused == kept
        qbo_rs.export_share(retried, data_dir=data)
        assert landed_versions(read_raw(data / "invoices.txt")) == truth_versions(emu, "Invoice")


def test_a_plan_over_max_requests_is_refused_before_any_page(client_factory) -> None:
    with QboEmulator(seed=7, invoices=5000, customers=5, items=5) as emu:
        client = client_factory(emu)
        with pytest.raises(RequestBudgetError) as refused:
            client.plan_shares("invoice", START, CLOSED_END, page_size=100, max_requests=10)
        assert refused.value.estimate.requests > 10
        assert emu.stats()["query_requests"] == refused.value.estimate.count_requests, "counts only"


def test_share_options_are_checked_before_any_request(client_factory) -> None:
    with QboEmulator(seed=7, invoices=10, customers=5, items=5) as emu:
        client = client_factory(emu)
        with pytest.raises(ConfigError, match="max_shares must be at least 1"):
            client.plan_shares("invoice", START, CLOSED_END, max_shares=0)
        with pytest.raises(ConfigError, match="max_shares"):
            client.plan_shares("invoice", START, CLOSED_END, max_sharez=2)  # type: ignore[call-arg]
        with pytest.raises(ConfigError, match="not a share from plan_shares"):
            client.stage_share("{}")
        assert emu.stats()["query_requests"] == 0


def test_as_many_shares_as_windows_gives_a_share_per_window(client_factory, tmp_path: Path) -> None:
    with QboEmulator(seed=9, invoices=3000, customers=5, items=5) as emu:
        client = client_factory(emu)
        plan = client.plan_shares("invoice", START, CLOSED_END, chunk_days=365, max_shares=100)
        windows = qbo_rs.plan_windows(START, CLOSED_END, 365, "invoice")
        assert [s.window_labels for s in plan.shares] == [[w.label] for w in windows]
        assert [s.label for s in plan.shares] == [w.label for w in windows], "a share is named by its window"
        data = tmp_path / "data"
        counted = sent(emu)
        for share in plan.shares:
            staged = client.stage_share(share, stage_dir=tmp_path / "stage", run_id="r")
            qbo_rs.export_share(staged, data_dir=data)
        assert landed_versions(read_raw(data / "invoices.txt")) == truth_versions(emu, "Invoice")
        # Each window's part of the stream closes with its own count: about two requests a window.
        assert sent(emu) - counted <= 2 * len(windows) + 2, sent(emu) - counted


def _instant(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _window_of(record: dict) -> str:
    """The UTC day a RAW line's filter timestamp falls in."""
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(record["last_updated_utc"].replace("Z", "+00:00")).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT00:00:00Z")


def test_every_record_lands_in_the_day_it_belongs_to_across_dst_and_streams_and_shares(
    client_factory, tmp_path: Path
) -> None:
    """QBO (and the emulator) write LastUpdatedTime in Pacific time, -08:00 or -07:00 by the
    season: daily UTC windows over years of DST changes, read as a few streams, by one process
    and by shares, put each record in the UTC day of its instant."""
    with QboEmulator(seed=4, invoices=12000, customers=5, items=5) as emu:
        client = client_factory(emu)
        options = dict(chunk_days=1, page_size=100)  # 120 pages: two streams, two shares
        report = client.backfill("invoice", START, CLOSED_END, data_dir=tmp_path / "one", **options)
        assert report.ok and report.estimate is not None and report.estimate.streams == 2
        plan = client.plan_shares("invoice", START, CLOSED_END, max_shares=4, **options)
        assert len(plan.shares) == 2
        for share in plan.shares:
            staged = client.stage_share(share, stage_dir=tmp_path / "stage", run_id="dst")
            qbo_rs.export_share(staged, data_dir=tmp_path / "shared")
        pacific = [r["last_updated_utc"] for r in emu.truth("Invoice")]
        instants = {r["id"]: _instant(r["last_updated_utc"]) for r in emu.truth("Invoice")}
        for folder in ("one", "shared"):
            lines = read_raw(tmp_path / folder / "invoices.txt")
            assert len(lines) == len(pacific) and landed_versions(lines) == truth_versions(emu, "Invoice")
            # The Pacific timestamps QBO sent, read back as the same instants.
            assert {i: _instant(r["last_updated_utc"]) for i, r in lines.items()} == instants
            wrong = [
                (r["id"], r["last_updated_utc"], r["extract_window_start_utc"])
                for r in lines.values()
                if r["extract_window_start_utc"] != _window_of(r)
            ]
            assert wrong == [], wrong[:5]
        # The data does cross the DST changes, in both directions, every year.
        days = {_window_of({"last_updated_utc": t})[:10] for t in pacific}
        assert {"2024-03-10", "2024-11-03", "2023-03-12", "2023-11-05"} <= days, sorted(days)[:5]
