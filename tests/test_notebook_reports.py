"""What a notebook shows of a backfill: reports as HTML tables and pandas frames, and the
records per period of a RAW file (qbo_rs.volume), checked against the emulator's truth."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import RANGE_END, RANGE_START, read_raw

import qbo_rs
from qbo_rs.exceptions import ConfigError
from qbo_rs.testing import QboEmulator


@pytest.fixture
def landed(emulator: QboEmulator, client_factory, tmp_path: Path):
    report = client_factory(emulator).backfill("invoice", RANGE_START, RANGE_END, chunk_days=365, data_dir=tmp_path)
    return report, tmp_path / "invoices.txt"


def test_reports_render_as_html_tables_and_frames(landed):
    report, _ = landed
    html = report._repr_html_()
    assert html.count("<tr>") == len(report.windows) + 1
    for window in report.windows:
        assert f"<td>{window.label}</td>" in html
        assert f"<td>{window.rows_written}</td>" in html
    assert f"{report.total_rows} record(s)" in html

    frame = report.to_pandas()
    assert list(frame["label"]) == [w.label for w in report.windows]
    assert int(frame["rows_written"].sum()) == report.total_rows
    assert str(frame["start"].dt.tz) == "UTC"

    one = report.windows[0]
    assert f"<td>{one.label}</td>" in one._repr_html_()
    assert one.to_pandas().to_dict("records")[0]["rows_fetched"] == one.rows_fetched


def test_server_count_is_none_in_a_backfill_and_set_by_a_staged_fetch(landed, emulator, client_factory, tmp_path):
    report, _ = landed
    assert all(w.server_count is None for w in report.windows)
    staged = client_factory(emulator).stage_window(
        "customer", RANGE_START, RANGE_END, page_size=50, stage_dir=tmp_path / "s"
    )
    assert staged.report.windows[0].server_count == staged.report.windows[0].rows_fetched > 50


def month_of(text: str) -> str:
    return text[:7]


@pytest.mark.parametrize("by", ["day", "month", "window"])
def test_volume_counts_every_record_once_by_its_period(landed, by):
    _, path = landed
    records = read_raw(path)
    vol = qbo_rs.volume(path, by=by)
    assert vol.total == len(records)
    if by == "day":
        expected = Counter(r["last_updated_utc"][:10] for r in records.values())
    elif by == "month":
        expected = Counter(month_of(r["last_updated_utc"]) for r in records.values())
    else:
        expected = Counter(f"invoice_backfill_{r['extract_window_start_utc'][:10]}" for r in records.values())
    assert dict(zip(vol.labels(), (n for _, _, n in vol.periods))) == dict(expected)
    assert vol.labels() == sorted(vol.labels())
    assert all(start.tzinfo is not None and start < end for start, end, _ in vol.periods)


def test_volume_by_txn_date_from_a_raw_table(landed):
    _, path = landed
    records = read_raw(path)
    vol = qbo_rs.volume(qbo_rs.read_txt(path), by="month", field="txn_date")
    expected = Counter(month_of(r["payload"]["TxnDate"]) for r in records.values())
    assert dict(zip(vol.labels(), (n for _, _, n in vol.periods))) == dict(expected)
    frame = vol.to_pandas()
    assert list(frame.columns) == ["period", "start", "end", "records"]
    assert int(frame["records"].sum()) == len(records)
    assert frame["start"].iloc[0] == datetime.strptime(vol.labels()[0], "%Y-%m").replace(tzinfo=timezone.utc)


def test_volume_plots_a_bar_per_period(landed):
    import matplotlib

    matplotlib.use("Agg")
    _, path = landed
    vol = qbo_rs.volume(path, by="month")
    ax = vol.plot()
    assert [round(p.get_height()) for p in ax.patches] == [n for _, _, n in vol.periods]


def test_volume_refuses_a_column_that_is_not_a_date(landed):
    _, path = landed
    with pytest.raises(ConfigError, match="not a date or time column.*txn_date"):
        qbo_rs.volume(path, field="doc_number")
    with pytest.raises(ConfigError, match="day, month or window"):
        qbo_rs.volume(path, by="week")
