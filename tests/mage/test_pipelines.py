"""The three Mage pipelines, run headless (scripts/mage_run_pipeline.py) against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import (
    DSN,
    PLURAL,
    PROJECT,
    RANGE_END,
    RANGE_START,
    SECRETS,
    base_env,
    mage_python,
    mage_script,
    postgres_env,
    psql,
    read_txt,
    run_pipeline,
    table_versions,
    truth,
)

FULL = {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END, "chunk_days": "400", "page_size": "50"}
# 600 invoices in pages of 3 are 200 pages: three streams (one more per 80 pages), three shares.
SHARED = dict(FULL, page_size="3", max_children="4")


CONTROLLERS = ("qb_fetch_window", "qb_export_window")  # Mage's records of the dynamic children


def work_runs(runs):
    """The block runs that do work: the planner, each child, the summary (Mage also keeps a
    record per dynamic child block, which runs no code of ours)."""
    return [r for r in runs if r not in CONTROLLERS]


def children(run) -> int:
    """The shares the planner fanned out to, from its ``Plan:`` line."""
    line = next(line for line in run.lines("Plan: ") if "max_children=" in line)
    return int(line.rsplit("; ", 1)[1].split()[0])


def planned_requests(emulator, variables) -> int:
    """The COUNT requests the planner spends on ``variables`` (the same plan, counted aside)."""
    import qbo_rs

    client = qbo_rs.QboClient(emulator.credentials(), token_store=None, requests_per_minute=100000)
    estimate = client.estimate(
        "invoice",
        variables["fecha_inicio"],
        variables["fecha_fin"],
        chunk_days=int(variables["chunk_days"]),
        page_size=int(variables["page_size"]),
    )
    return estimate.count_requests


def summary_line(run, prefix: str) -> str:
    lines = [line for line in run.lines("qb_backfill_summary") if line.startswith(prefix)]
    assert len(lines) == 1, run
    return lines[0]


def block_runs(run):
    """{block run uuid: (status, upstream block run or '')} from the runner's block_run lines."""
    out = {}
    for line in run.out.splitlines():
        parts = line.split()
        if parts[:1] == ["block_run"]:
            out[parts[1]] = (parts[2], parts[4] if len(parts) > 4 and parts[3] == "<-" else "")
    return out


def reset_by_retry(run):
    """The block runs --retry-run reset (failed, upstream_failed, cancelled; `initial` ones run anyway)."""
    line = next(line for line in run.out.splitlines() if "block run(s) reset:" in line)
    return sorted(line.split("reset: ", 1)[1].split(", "))


def staged_files(tmp_path: Path, plural: str):
    """Manifests and records staged and not yet written (the receipts of written ones aside)."""
    folder = tmp_path / "data" / ".qbo_rs" / "stage" / plural
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".json", ".jsonl", ".partial"))


def block_output_files(tmp_path: Path, pipeline: str):
    return [p for p in (tmp_path / "mage_data").glob(f"*/pipelines/{pipeline}/.variables/**/*") if p.is_file()]


def windows_and_rows(slug, expected, emulator):
    """Each window of FULL with the records its filter timestamp puts in it, from the truth."""
    import qbo_rs

    rows = emulator.truth({"invoice": "Invoice", "customer": "Customer", "item": "Item"}[slug])
    out = []
    for w in qbo_rs.plan_windows(RANGE_START, RANGE_END, int(FULL["chunk_days"]), slug):
        lo, hi = w.start.strftime("%Y-%m-%dT%H:%M:%S"), w.end.strftime("%Y-%m-%dT%H:%M:%S")
        out.append((w, sum(1 for r in rows if lo <= r["last_updated_utc"][:19] < hi)))
    assert sum(n for _, n in out) == len(expected)
    return out


@pytest.mark.parametrize("slug", ["invoice", "customer", "item"])
def test_pipeline_lands_ground_truth_in_txt_and_postgres_and_rerun_adds_nothing(
    slug, emulator, env, tmp_path: Path, pg_schema
):
    env.update(postgres_env(DSN))
    variables = dict(FULL, sink="both", pg_schema=pg_schema)
    first = run_pipeline(f"qb_{slug}_backfill", env, variables)
    assert first.rc == 0, first
    expected = truth(emulator, slug)
    txt = tmp_path / "data" / f"{PLURAL[slug]}.txt"
    assert read_txt(txt) == expected
    assert table_versions(pg_schema, f"qb_{PLURAL[slug]}") == expected
    assert summary_line(first, "Total ") == f"Total {PLURAL[slug]} descargadas: {len(expected)}"
    assert summary_line(first, "Validation:") == "Validation: Integrity Check Passed"
    rango = first.lines("Rango ")
    assert f"Plan: {len(rango)} window(s), {len(expected)} record(s)" in first.out
    assert rango == [f"Rango {w.range_text[6:]} -> {n} filas" for w, n in windows_and_rows(slug, expected, emulator)]

    # Two block runs per share (fetch and export, the export tied to its own fetch), whatever
    # the number of windows: small data is one share.
    runs = block_runs(first)
    fetches = sorted(k for k in runs if k.startswith("qb_fetch_window:"))
    exports = {k: v for k, v in runs.items() if k.startswith("qb_export_window:")}
    assert len(fetches) == len(exports) == children(first) == 1 and len(rango) > 5, first
    assert len(work_runs(runs)) <= 2 * children(first) + 2, runs
    assert all(status == "completed" for status, _ in runs.values()), first
    assert sorted(up for _, up in exports.values()) == fetches
    # The stage is gone once every window is written; block outputs carry no record.
    assert staged_files(tmp_path, PLURAL[slug]) == []
    outputs = block_output_files(tmp_path, f"qb_{slug}_backfill")
    assert len(outputs) >= 4
    assert not [p for p in outputs if b"SyncToken" in p.read_bytes()], "a record in a block output"
    too_big = {
        str(p.relative_to(tmp_path)): p.stat().st_size for p in outputs if p.stat().st_size > 4096 + 256 * len(rango)
    }
    assert too_big == {}

    before = txt.read_bytes()
    second = run_pipeline(f"qb_{slug}_backfill", env, variables)
    assert second.rc == 0, second
    assert f", 0 inserted, 0 updated, {len(expected)} unchanged" in summary_line(
        second, f"Summary: {len(rango)} window(s)"
    )
    assert txt.read_bytes() == before
    assert table_versions(pg_schema, f"qb_{PLURAL[slug]}") == expected


def test_failed_fetch_fails_only_its_child_and_a_retry_fetches_it_again_and_exports_all(emulator, env, tmp_path: Path):
    # After the planner's counts, a 429 storm of 7 (max_retries=6) exhausts the first share's
    # first request; the other shares read normally.
    emulator.set_knobs(force_429_after=planned_requests(emulator, SHARED), force_429_next=7)
    failed = run_pipeline("qb_invoice_backfill", env, SHARED)
    assert failed.rc == 1, failed
    assert children(failed) == 3, failed
    runs = block_runs(failed)
    fetches = {k: v[0] for k, v in runs.items() if k.startswith("qb_fetch_window:")}
    assert len(fetches) == 3 and sorted(fetches.values()).count("failed") == 1, failed
    bad = next(k for k, v in fetches.items() if v == "failed")
    assert bad.startswith("qb_fetch_window:invoice_backfill_2015-01-01..")
    assert "window(s) read are kept; retry this block run" in failed.err
    # mage-ai 0.9.80 (dynamic blocks v1) starts the children of a dynamic child only once every
    # upstream child completed: no export ran, the other shares wait in the stage, fetched once.
    assert not [k for k in runs if k.startswith("qb_export_window:")], failed
    assert runs["qb_export_window"][0] in ("initial", "upstream_failed"), failed
    assert runs["qb_backfill_summary"][0] != "completed"
    assert not (tmp_path / "data" / "invoices.txt").exists()
    assert len([f for f in staged_files(tmp_path, "invoices") if f.endswith(".share.json")]) == 2
    requests = emulator.stats()["query_requests"]

    retried = run_pipeline("qb_invoice_backfill", env, None, "--retry-run", str(failed.run_id))
    assert retried.rc == 0, retried
    assert retried.run_id == failed.run_id
    reset = reset_by_retry(retried)
    assert bad in reset and not [r for r in reset if r.startswith("qb_fetch_window:") and r != bad], retried
    expected = truth(emulator, "invoice")
    assert read_txt(tmp_path / "data" / "invoices.txt") == expected
    assert summary_line(retried, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert summary_line(retried, "Validation:") == "Validation: Integrity Check Passed"
    # Only the failed share was read again: its pages as planned, no count of the plan again
    # (pages of 3 make most seconds a tie group, read by offset: up to half as many again).
    pages = next(int(line.rsplit("~", 1)[1].split()[0]) for line in failed.lines(f"Share {bad.split(':', 1)[1]}: "))
    again = emulator.stats()["query_requests"] - requests
    assert pages <= again <= 1.5 * pages + 5, (again, pages)
    assert again < 200 * 0.6, "a retry reads one share, not the data"
    assert all(status == "completed" for status, _ in block_runs(retried).values()), retried
    assert staged_files(tmp_path, "invoices") == []

    # Or re-run one window alone by its label, in a new run: it reads and writes only that window.
    before = emulator.stats()["query_requests"]
    alone = run_pipeline("qb_invoice_backfill", env, SHARED, "--window", "invoice_backfill_2015-01-01")
    assert alone.rc == 0, alone
    assert "Plan: 1 window(s) (of " in alone.out
    assert ", 0 inserted, 0 updated," in summary_line(alone, "Summary: 1 window(s)")
    assert (
        alone.lines("Rango ") == [line for line in alone.lines("Rango ") if line.startswith("Rango 2015-01-01 ")] != []
    )
    runs = block_runs(alone)
    assert runs["qb_export_window:0"] == ("completed", "qb_fetch_window:invoice_backfill_2015-01-01")
    in_window = sum(1 for r in emulator.truth("Invoice") if r["last_updated_utc"][:10] < "2016-02-05")
    # Its pages (and tie groups, as above), a count: not the other windows'.
    assert emulator.stats()["query_requests"] - before <= 1.5 * -(-in_window // 3) + 4


def test_daily_windows_over_eleven_years_cost_a_few_block_runs_and_requests(emulator, env, tmp_path: Path):
    """A daily backfill of eleven years: chunk_days=1 from 2014-09-01 to 2025-09-12 is 4,029 windows; read by the
    data they are one share (600 invoices): four block runs and a handful of requests."""
    variables = {"fecha_inicio": "2014-09-01", "fecha_fin": "2025-09-12", "chunk_days": "1"}
    run = run_pipeline("qb_invoice_backfill", env, variables)
    assert run.rc == 0, run
    rango = run.lines("Rango ")
    assert len(rango) == 4029 and rango[0] == "Rango 2014-09-01 a 2014-09-02 -> 0 filas", rango[:3]
    runs = block_runs(run)
    assert children(run) == 1 and len(work_runs(runs)) == 4, runs
    expected = {
        r["id"]: str(r["sync_token"])
        for r in emulator.truth("Invoice")
        if "2014-09-01T00:00:00Z" <= r["last_updated_utc"] < "2025-09-12T00:00:00Z"
    }
    assert read_txt(tmp_path / "data" / "invoices.txt") == expected
    assert summary_line(run, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert emulator.stats()["query_requests"] <= 4, emulator.stats()  # a count, a page (ties aside)
    empty = [line for line in run.lines("returned 0 rows")]
    assert len(empty) <= 2 and all("windows)" in line for line in empty), empty  # compact ranges, not 3,000 lines


def test_max_children_up_to_the_windows_gives_a_child_per_window(emulator, env, tmp_path: Path):
    run = run_pipeline("qb_invoice_backfill", env, dict(FULL, max_children="50"))
    assert run.rc == 0, run
    windows = len(run.lines("Rango "))
    runs = block_runs(run)
    fetches = sorted(k.split(":", 1)[1] for k in runs if k.startswith("qb_fetch_window:"))
    assert children(run) == windows == len(fetches) > 5 and len(work_runs(runs)) == 2 * windows + 2, runs
    assert all(".." not in label and label.startswith("invoice_backfill_") for label in fetches)
    assert read_txt(tmp_path / "data" / "invoices.txt") == truth(emulator, "invoice")


def test_failed_exports_keep_their_stage_and_a_retry_writes_them_without_fetching_again(emulator, env, tmp_path: Path):
    # The TXT target cannot be opened (a folder sits where invoices.txt goes): every export fails
    # after every fetch staged its window.
    target = tmp_path / "data" / "invoices.txt"
    target.mkdir(parents=True)
    failed = run_pipeline("qb_invoice_backfill", env, FULL)
    assert failed.rc == 1, failed
    runs = block_runs(failed)
    fetches = [k for k in runs if k.startswith("qb_fetch_window:")]
    exports = [k for k in runs if k.startswith("qb_export_window:")]
    assert all(runs[k][0] == "completed" for k in fetches), failed
    assert exports and all(runs[k][0] == "failed" for k in exports) and len(exports) == len(fetches), failed
    assert "The stage " in failed.err and "is kept" in failed.err
    assert len(staged_files(tmp_path, "invoices")) == 2 * len(fetches)
    requests = emulator.stats()["query_requests"]

    target.rmdir()
    retried = run_pipeline("qb_invoice_backfill", env, None, "--retry-run", str(failed.run_id))
    assert retried.rc == 0, retried
    assert [r for r in reset_by_retry(retried) if r != "qb_backfill_summary"] == sorted(exports), retried
    assert emulator.stats()["query_requests"] == requests, "a retried export never asks QBO again"
    expected = truth(emulator, "invoice")
    assert read_txt(target) == expected
    assert summary_line(retried, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert staged_files(tmp_path, "invoices") == []


def test_one_failed_export_fails_only_its_child_and_its_retry_completes_the_data(
    emulator, env, tmp_path: Path, pg_schema
):
    """PostgreSQL refuses one window's rows (a CHECK constraint on one id): the export of that
    window's share fails alone, its stage is kept, and a retry of the run writes it from the stage."""
    import qbo_rs

    env.update(postgres_env(DSN))
    windows = qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=int(FULL["chunk_days"]), entity="invoice")
    victim_window = windows[3]
    lo, hi = (victim_window.start.strftime("%Y-%m-%dT%H:%M:%SZ"), victim_window.end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    victim = next(r["id"] for r in emulator.truth("Invoice") if lo <= r["last_updated_utc"] < hi)
    table = f'"{pg_schema}"."qb_invoices"'
    psql(
        f'create schema "{pg_schema}"; create table {table} (id varchar primary key, payload jsonb not null, '
        "ingested_at_utc timestamptz not null, extract_window_start_utc timestamptz not null, "
        "extract_window_end_utc timestamptz not null, page_number integer not null, page_size integer not null, "
        "last_updated_utc timestamptz not null, sync_token bigint not null, realm_id varchar not null, "
        f"constraint not_this_one check (id <> '{victim}'))"
    )
    failed = run_pipeline("qb_invoice_backfill", env, dict(SHARED, sink="postgres", pg_schema=pg_schema))
    assert failed.rc == 1, failed
    assert children(failed) == 3, failed
    runs = block_runs(failed)
    bad = [k for k, (status, _) in runs.items() if status == "failed"]
    assert len(bad) == 1 and bad[0].startswith("qb_export_window:"), failed
    share = runs[bad[0]][1].split(":", 1)[1]  # the label of the share its fetch read
    first, last_start = share.split("..")
    assert first <= victim_window.label and victim_window.start.strftime("%Y-%m-%d") <= last_start, (
        share,
        victim_window,
    )
    assert all(runs[k][0] == "completed" for k in runs if k not in bad and k != "qb_backfill_summary"), failed
    assert staged_files(tmp_path, "invoices") == sorted([f"{share}.a1.jsonl", f"{share}.share.json"])
    expected = truth(emulator, "invoice")
    landed = table_versions(pg_schema, "qb_invoices")
    assert set(landed) < set(expected) and victim not in landed
    requests = emulator.stats()["query_requests"]

    psql(f"alter table {table} drop constraint not_this_one")
    retried = run_pipeline("qb_invoice_backfill", env, None, "--retry-run", str(failed.run_id))
    assert retried.rc == 0, retried
    assert [r for r in reset_by_retry(retried) if r != "qb_backfill_summary"] == bad, retried
    assert emulator.stats()["query_requests"] == requests
    assert table_versions(pg_schema, "qb_invoices") == expected
    assert summary_line(retried, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert staged_files(tmp_path, "invoices") == []


def test_credentials_from_mage_secrets_and_rotated_token_written_back(emulator, env, tmp_path: Path):
    emulator.set_knobs(refresh_rotate_after_secs=0, old_refresh_grace_secs=0)  # rotate on every refresh
    original = env["QBO_REFRESH_TOKEN"]
    # Secrets set headlessly, values through stdin; then the environment no longer has them.
    for name, var in (
        ("qb_client_id", "QBO_CLIENT_ID"),
        ("qb_client_secret", "QBO_CLIENT_SECRET"),
        ("qb_refresh_token", "QBO_REFRESH_TOKEN"),
        ("qb_realm_id", "QBO_REALM_ID"),
    ):
        p = mage_script(SECRETS, env, "set", name, stdin=env.pop(var) + "\n")
        assert p.returncode == 0 and f"secret {name} set" in p.stdout, p.stderr[-2000:]
    listed = mage_script(SECRETS, env, "list")
    assert listed.stdout.split() == ["qb_client_id", "qb_client_secret", "qb_refresh_token", "qb_realm_id"]
    assert original not in mage_script(SECRETS, env, "get", "qb_refresh_token").stdout  # not revealed

    run = run_pipeline(
        "qb_item_backfill", env, {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END, "chunk_days": "1000"}
    )  # sink: txt by default
    assert run.rc == 0, run
    assert (
        "qb_client_id=mage_secret, qb_client_secret=mage_secret, qb_realm_id=mage_secret, "
        "qb_refresh_token=mage_secret" in run.err
    )
    assert read_txt(tmp_path / "data" / "items.txt") == truth(emulator, "item")
    assert "Intuit rotated the refresh token: Mage secret qb_refresh_token updated" in run.out
    rotated = mage_script(SECRETS, env, "get", "qb_refresh_token", "--reveal").stdout.strip()
    assert rotated and rotated != original
    assert original not in run.out + run.err and rotated not in run.out + run.err  # never logged

    # The secret alone (token store wiped) authenticates: it holds the live token, the old one is dead.
    for f in (tmp_path / "mage_data" / "qbo_rs").iterdir():
        f.unlink()
    again = run_pipeline(
        "qb_item_backfill", env, {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END, "chunk_days": "1000"}
    )
    assert again.rc == 0, again
    assert emulator.stats()["invalid_grant"] == 0


def test_environment_fallback_and_a_missing_secret_is_named_before_any_request(emulator, env, tmp_path: Path):
    ok = run_pipeline("qb_customer_backfill", env, dict(FULL, sink="TXT"))
    assert ok.rc == 0, ok
    assert "qb_client_id=env, qb_client_secret=env, qb_realm_id=env, qb_refresh_token=env" in ok.err
    assert read_txt(tmp_path / "data" / "customers.txt") == truth(emulator, "customer")

    queries = emulator.stats()["query_requests"]
    del env["QBO_CLIENT_SECRET"]
    missing = run_pipeline("qb_customer_backfill", env, FULL)
    assert missing.rc == 1
    assert "qb_client_secret (Mage secret) or QBO_CLIENT_SECRET (environment)" in missing.err
    assert "block_run qb_plan_windows" in missing.out and "failed" in missing.out
    assert emulator.stats()["query_requests"] == queries


@pytest.mark.parametrize(
    "variables,message",
    [
        (
            {"fecha_inicio": "2025-01-01", "fecha_fin": "2025-02-01", "page_size": "5000"},
            "page_size must be between 1 and 1000 (QBO's MAXRESULTS limit), got 5000",
        ),
        (
            {"fecha_inicio": "2025-02-01", "fecha_fin": "2025-01-01"},
            "fecha_fin (2025-01-01T00:00:00Z) must be after fecha_inicio",
        ),
        (
            {"fecha_inicio": "01/02/2025", "fecha_fin": "2025-03-01"},
            'fecha_inicio = "01/02/2025" is not an ISO date: use YYYY-MM-DD',
        ),
        (
            {"fecha_inicio": "2025-01-01", "fecha_fin": "2025-03-01", "sink": "parquet"},
            "sink must be one of txt, postgres, both, e.g. txt (got 'parquet')",
        ),
    ],
)
def test_bad_runtime_variable_fails_the_planner_with_a_clear_error(variables, message, emulator, env):
    run = run_pipeline("qb_item_backfill", env, variables)
    assert run.rc == 1
    assert message in run.err, run
    assert emulator.stats()["query_requests"] == 0


def test_unsafe_table_names_fail_the_planner_before_any_request(emulator, env):
    env.update(POSTGRES_HOST="127.0.0.1", POSTGRES_DB="raw", POSTGRES_USER="u", POSTGRES_PASSWORD="p")
    for variables in ({"pg_schema": 'raw"; drop table x; --'}, {"pg_table_prefix": "qb-"}):
        run = run_pipeline(
            "qb_item_backfill", env, dict(variables, fecha_inicio="2025-01-01", fecha_fin="2025-02-01", sink="postgres")
        )
        assert run.rc == 1 and "pg_schema=" in run.err and "pg_table_prefix=" in run.err, run
        assert "block_run qb_plan_windows" in run.out and not [
            line for line in run.out.splitlines() if line.strip().startswith("block_run qb_fetch_window:")
        ]
    assert emulator.stats()["query_requests"] == 0


def test_window_bounds_in_handles_read_back_exactly():
    result = mage_python(r"""
import json
from datetime import datetime, timezone
from mage_project.utils.qb_mage import utc_text, parse_instant
out = []
for text in ('0001-01-01', '2025-01-01T00:00:00.250Z', '2025-03-09T02:30:00-07:00'):
    moment = parse_instant('fecha_inicio', text)
    out.append([utc_text(moment), datetime.fromisoformat(utc_text(moment).replace('Z', '+00:00')) == moment])
print(json.dumps(out))
""")
    assert result == [
        ["0001-01-01T00:00:00Z", True],
        ["2025-01-01T00:00:00.250000Z", True],
        ["2025-03-09T09:30:00Z", True],
    ]


def test_a_sub_second_range_runs_without_an_alert(emulator, env):
    run = run_pipeline(
        "qb_item_backfill",
        env,
        dict(fecha_inicio="2015-01-01T00:00:00.250Z", fecha_fin="2026-01-01T00:00:00.750Z", chunk_days="3650"),
    )
    assert run.rc == 0, run
    assert "Validation: Integrity Check Passed" in run.out and "[ALERT]" not in run.out + run.err


def test_a_data_dir_that_is_a_file_fails_the_planner_by_name(emulator, env, tmp_path: Path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    run = run_pipeline(
        "qb_item_backfill", env, dict(fecha_inicio="2025-01-01", fecha_fin="2025-02-01", data_dir=str(a_file))
    )
    assert run.rc == 1 and "is a file, not a folder: set the variable data_dir" in run.err, run
    assert "FileExistsError" not in run.err
    assert emulator.stats()["query_requests"] == 0


def test_runtime_variables_are_coerced_from_what_mage_passes():
    result = mage_python(r"""
import json
from datetime import date, datetime, timezone, timedelta
from mage_project.utils.qb_mage import run_params, parse_instant, RunVariableError
base = dict(pipeline_uuid='qb_invoice_backfill', repo_path='/x/mage_project')
ok = []
for extra in [dict(fecha_inicio='2025-01-01', fecha_fin='2025-02-01', page_size='50', chunk_days=7.0, sink=' Both '),
              dict(fecha_inicio=date(2025, 1, 1), fecha_fin=datetime(2025, 2, 1, 19, 0, tzinfo=timezone(timedelta(hours=-5))),
                   page_size=1000, chunk_days='1', windows='invoice_backfill_2025-01-01, invoice_backfill_2025-01-02'),
              dict(fecha_inicio='2025-01-01T00:00:00Z', fecha_fin='2025-01-01 12:30', page_size=None, sink='')]:
    p = run_params(dict(base, **extra))
    ok.append([p.entity, p.start.isoformat(), p.end.isoformat(), p.page_size, p.chunk_days, p.sink, p.windows, p.data_dir])
bad = []
for extra in [dict(fecha_fin='2025-02-01'), dict(fecha_inicio='2025-01-01', fecha_fin='2025-13-01'),
              dict(fecha_inicio='2025-01-01', fecha_fin='2025-02-01', page_size=0),
              dict(fecha_inicio='2025-01-01', fecha_fin='2025-02-01', page_size='12.5'),
              dict(fecha_inicio='2025-01-01', fecha_fin='2025-02-01', page_size=True),
              dict(fecha_inicio='2025-01-01', fecha_fin='2025-02-01', chunk_days='0'),
              dict(fecha_inicio=20250101, fecha_fin='2025-02-01')]:
    try:
        run_params(dict(base, **extra)); bad.append(None)
    except RunVariableError as e:
        bad.append(str(e))
print(json.dumps([ok, bad]))
""")
    ok, bad = result
    assert ok[0] == [
        "invoice",
        "2025-01-01T00:00:00+00:00",
        "2025-02-01T00:00:00+00:00",
        50,
        7,
        "both",
        None,
        "/x/data",
    ]
    assert ok[1] == [
        "invoice",
        "2025-01-01T00:00:00+00:00",
        "2025-02-02T00:00:00+00:00",
        1000,
        1,
        "txt",
        ["invoice_backfill_2025-01-01", "invoice_backfill_2025-01-02"],
        "/x/data",
    ]
    assert ok[2][1:6] == ["2025-01-01T00:00:00+00:00", "2025-01-01T12:30:00+00:00", 1000, 50, "txt"]  # the default page
    assert bad == [
        "fecha_inicio is required: an ISO date or datetime in UTC, e.g. 2025-01-01",
        'fecha_fin = "2025-13-01" is not an ISO date: use YYYY-MM-DD (midnight UTC) or an ISO datetime such as '
        "2025-01-31T00:00:00Z",
        # The engine's own checks and words: the option's name is the variable's.
        "page_size must be between 1 and 1000 (QBO's MAXRESULTS limit), got 0",
        'page_size must be a whole number, not a string "12.5"',
        "page_size must be a whole number, not a boolean True",
        "chunk_days must be at least 1",
        "fecha_inicio must be an ISO date string such as 2025-01-31, a date or a datetime, not int",
    ]


def test_every_mage_worker_draws_on_one_realm_budget(tmp_path: Path):
    """Each window's client asks for the realm's whole budget through the machine-wide budget
    file, so parallel workers share it (tests/mage/test_triggers_scheduler.py runs them)."""
    from qbo_rs.testing import QboEmulator

    with QboEmulator(seed=3, invoices=10, customers=5, items=5) as emu:
        env = base_env(tmp_path)
        env.update(emu.env(), QBO_TOKEN_STORE=str(tmp_path / "t.json"))
        result = mage_python(
            r"""
import json, os
from mage_project.utils.qb_mage import make_client, realm_budget
from qbo_rs.exceptions import ConfigError
kw = dict(repo_path=%r, logger=None)
clients = [make_client(kw)[0] for _ in range(2)]
out = [realm_budget(), [str(c.budget_file) for c in clients]]
os.environ['QBO_RS_REALM_RPM'] = '0'
try: realm_budget(); out.append(None)
except ConfigError as e: out.append(str(e))
print(json.dumps(out))
"""
            % str(PROJECT),
            env=env,
        )
    assert result[0] == [490, 10]
    first, second = result[1]
    assert first == second and first.startswith(str(tmp_path / "budget")), result
    assert result[2] == "QBO_RS_REALM_RPM must be at least 1 (got 0)"
