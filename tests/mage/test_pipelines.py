"""The three Mage pipelines, run headless (scripts/mage_run_pipeline.py) against the emulator."""

from __future__ import annotations

import json
import os
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


def summary_line(run, prefix: str) -> str:
    lines = [l for l in run.lines("qb_backfill_summary") if l.startswith(prefix)]
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
    line = next(l for l in run.out.splitlines() if "block run(s) reset:" in l)
    return sorted(line.split("reset: ", 1)[1].split(", "))


def staged_files(tmp_path: Path, plural: str):
    """Manifests and records staged and not yet written (the receipts of written ones aside)."""
    folder = tmp_path / "data" / ".qbo_rs" / "stage" / plural
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".json", ".jsonl", ".partial"))


def block_output_files(tmp_path: Path, pipeline: str):
    return [p for p in (tmp_path / "mage_data").glob(f"*/pipelines/{pipeline}/.variables/**/*") if p.is_file()]


@pytest.mark.parametrize("slug", ["invoice", "customer", "item"])
def test_pipeline_lands_ground_truth_in_txt_and_postgres_and_rerun_adds_nothing(
        slug, emulator, env, tmp_path: Path, pg_schema):
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
    assert f"{len(rango)} window(s) to run" in first.out

    # Two block runs per window: qb_fetch_window:<label> (it logs Rango) and qb_export_window:<n>
    # (Mage numbers the children of a dynamic child), each export tied to its own fetch.
    runs = block_runs(first)
    fetches = sorted(k for k in runs if k.startswith("qb_fetch_window:"))
    exports = {k: v for k, v in runs.items() if k.startswith("qb_export_window:")}
    assert len(fetches) == len(exports) == len(rango) > 5, first
    assert all(status == "completed" for status, _ in runs.values()), first
    assert sorted(up for _, up in exports.values()) == fetches
    # qb_export_window:<n> belongs to the n-th window of the plan (the order the fetches ran and logged).
    fetch_labels = [l.split()[0].split(":", 1)[1] for l in first.out.splitlines()
                    if l.strip().startswith("qb_fetch_window:") and "| Rango " in l]
    assert [exports[f"qb_export_window:{i}"][1] for i in range(len(exports))] == \
        [f"qb_fetch_window:{label}" for label in fetch_labels]
    # The stage is gone once every window is written; block outputs stay small (handles, summaries).
    assert staged_files(tmp_path, PLURAL[slug]) == []
    outputs = block_output_files(tmp_path, f"qb_{slug}_backfill")
    assert len(outputs) > 2 * len(rango)
    too_big = {str(p.relative_to(tmp_path)): p.stat().st_size for p in outputs if p.stat().st_size > 4096}
    assert too_big == {}

    before = txt.read_bytes()
    second = run_pipeline(f"qb_{slug}_backfill", env, variables)
    assert second.rc == 0, second
    assert f", 0 inserted, 0 updated, {len(expected)} unchanged" in summary_line(second, f"Summary: {len(rango)} window(s)")
    assert txt.read_bytes() == before
    assert table_versions(pg_schema, f"qb_{PLURAL[slug]}") == expected


def test_failed_fetch_fails_only_its_child_and_a_retry_fetches_it_again_and_exports_all(emulator, env, tmp_path: Path):
    # 7 attempts (max_retries=6) exhaust the first window; the next window absorbs 2 more 429s.
    emulator.set_knobs(force_429_next=9)
    failed = run_pipeline("qb_invoice_backfill", env, FULL)
    assert failed.rc == 1, failed
    runs = block_runs(failed)
    fetches = {k: v[0] for k, v in runs.items() if k.startswith("qb_fetch_window:")}
    assert sorted(fetches.values()).count("failed") == 1, failed
    bad = next(k for k, v in fetches.items() if v == "failed")
    assert bad == "qb_fetch_window:invoice_backfill_2015-01-01"
    assert all(v == "completed" for k, v in fetches.items() if k != bad)
    # mage-ai 0.9.80 (dynamic blocks v1) starts the children of a dynamic child only once every
    # upstream child completed: no export ran, the other windows wait in the stage, fetched once.
    assert not [k for k in runs if k.startswith("qb_export_window:")], failed
    assert runs["qb_export_window"][0] in ("initial", "upstream_failed"), failed
    assert runs["qb_backfill_summary"][0] != "completed"
    assert not (tmp_path / "data" / "invoices.txt").exists()
    assert len(staged_files(tmp_path, "invoices")) == 2 * (len(fetches) - 1)  # manifest + records each
    requests = emulator.stats()["query_requests"]

    retried = run_pipeline("qb_invoice_backfill", env, None, "--retry-run", str(failed.run_id))
    assert retried.rc == 0, retried
    assert retried.run_id == failed.run_id
    # The runner stops at the first failure, so the export controller and the summary are still
    # `initial` (under Mage's scheduler: `upstream_failed`, which --retry-run resets too).
    reset = reset_by_retry(retried)
    assert bad in reset and not [r for r in reset if r.startswith("qb_fetch_window:") and r != bad], retried
    expected = truth(emulator, "invoice")
    assert read_txt(tmp_path / "data" / "invoices.txt") == expected
    assert summary_line(retried, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert summary_line(retried, "Validation:") == "Validation: Integrity Check Passed"
    # Only the failed window was fetched again (the others were exported from their stage).
    assert retried.lines("Rango ") == retried.lines("Rango 2015-01-01 ") != []
    assert emulator.stats()["query_requests"] - requests <= 3
    assert all(status == "completed" for status, _ in block_runs(retried).values()), retried
    assert staged_files(tmp_path, "invoices") == []

    # Or re-run one window alone by its label, in a new run: it writes nothing new.
    alone = run_pipeline("qb_invoice_backfill", env, FULL, "--window", "invoice_backfill_2015-01-01")
    assert alone.rc == 0, alone
    assert "1 window(s) to run (of " in alone.out
    assert ", 0 inserted, 0 updated," in summary_line(alone, "Summary: 1 window(s)")
    assert block_runs(alone)["qb_export_window:0"] == ("completed", "qb_fetch_window:invoice_backfill_2015-01-01")


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
    assert retried.lines("Rango ") == []
    assert emulator.stats()["query_requests"] == requests, "a retried export never asks QBO again"
    expected = truth(emulator, "invoice")
    assert read_txt(target) == expected
    assert summary_line(retried, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert staged_files(tmp_path, "invoices") == []


def test_one_failed_export_fails_only_its_child_and_its_retry_completes_the_data(
        emulator, env, tmp_path: Path, pg_schema):
    """PostgreSQL refuses one window's rows (a CHECK constraint on one id): that window's export
    fails alone, its stage is kept, and a retry of the run writes it from the stage."""
    import qbo_rs

    env.update(postgres_env(DSN))
    windows = qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=int(FULL["chunk_days"]), entity="invoice")
    victim_window = windows[3]
    lo, hi = (victim_window.start.strftime("%Y-%m-%dT%H:%M:%SZ"), victim_window.end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    victim = next(r["id"] for r in emulator.truth("Invoice") if lo <= r["last_updated_utc"] < hi)
    table = f'"{pg_schema}"."qb_invoices"'
    psql(f'create schema "{pg_schema}"; create table {table} (id varchar primary key, payload jsonb not null, '
         'ingested_at_utc timestamptz not null, extract_window_start_utc timestamptz not null, '
         'extract_window_end_utc timestamptz not null, page_number integer not null, page_size integer not null, '
         'last_updated_utc timestamptz not null, sync_token bigint not null, realm_id varchar not null, '
         f"constraint not_this_one check (id <> '{victim}'))")
    failed = run_pipeline("qb_invoice_backfill", env, dict(FULL, sink="postgres", pg_schema=pg_schema))
    assert failed.rc == 1, failed
    runs = block_runs(failed)
    bad = [k for k, (status, _) in runs.items() if status == "failed"]
    assert bad == ["qb_export_window:3"] and runs["qb_export_window:3"][1] == f"qb_fetch_window:{victim_window.label}"
    assert all(runs[k][0] == "completed" for k in runs if k not in bad and k != "qb_backfill_summary"), failed
    assert staged_files(tmp_path, "invoices") == sorted([f"{victim_window.label}.json", f"{victim_window.label}.jsonl"])
    expected = truth(emulator, "invoice")
    landed = table_versions(pg_schema, "qb_invoices")
    assert set(landed) < set(expected) and victim not in landed
    requests = emulator.stats()["query_requests"]

    psql(f"alter table {table} drop constraint not_this_one")
    retried = run_pipeline("qb_invoice_backfill", env, None, "--retry-run", str(failed.run_id))
    assert retried.rc == 0, retried
    assert [r for r in reset_by_retry(retried) if r != "qb_backfill_summary"] == ["qb_export_window:3"], retried
    assert emulator.stats()["query_requests"] == requests
    assert table_versions(pg_schema, "qb_invoices") == expected
    assert summary_line(retried, "Total ") == f"Total invoices descargadas: {len(expected)}"
    assert staged_files(tmp_path, "invoices") == []


def test_credentials_from_mage_secrets_and_rotated_token_written_back(emulator, env, tmp_path: Path):
    emulator.set_knobs(refresh_rotate_after_secs=0, old_refresh_grace_secs=0)  # rotate on every refresh
    original = env["QBO_REFRESH_TOKEN"]
    # Secrets set headlessly, values through stdin; then the environment no longer has them.
    for name, var in (("qb_client_id", "QBO_CLIENT_ID"), ("qb_client_secret", "QBO_CLIENT_SECRET"),
                      ("qb_refresh_token", "QBO_REFRESH_TOKEN"), ("qb_realm_id", "QBO_REALM_ID")):
        p = mage_script(SECRETS, env, "set", name, stdin=env.pop(var) + "\n")
        assert p.returncode == 0 and f"secret {name} set" in p.stdout, p.stderr[-2000:]
    listed = mage_script(SECRETS, env, "list")
    assert listed.stdout.split() == ["qb_client_id", "qb_client_secret", "qb_refresh_token", "qb_realm_id"]
    assert original not in mage_script(SECRETS, env, "get", "qb_refresh_token").stdout  # not revealed

    run = run_pipeline("qb_item_backfill", env, {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END,
                                                 "chunk_days": "1000"})  # sink: txt by default
    assert run.rc == 0, run
    assert "qb_client_id=mage_secret, qb_client_secret=mage_secret, qb_realm_id=mage_secret, " \
           "qb_refresh_token=mage_secret" in run.err
    assert read_txt(tmp_path / "data" / "items.txt") == truth(emulator, "item")
    assert "Intuit rotated the refresh token: Mage secret qb_refresh_token updated" in run.out
    rotated = mage_script(SECRETS, env, "get", "qb_refresh_token", "--reveal").stdout.strip()
    assert rotated and rotated != original
    assert original not in run.out + run.err and rotated not in run.out + run.err  # never logged

    # The secret alone (token store wiped) authenticates: it holds the live token, the old one is dead.
    for f in (tmp_path / "mage_data" / "qbo_rs").iterdir():
        f.unlink()
    again = run_pipeline("qb_item_backfill", env, {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END,
                                                   "chunk_days": "1000"})
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


@pytest.mark.parametrize("variables,message", [
    ({"fecha_inicio": "2025-01-01", "fecha_fin": "2025-02-01", "page_size": "5000"},
     "page_size must be between 1 and 1000 (got 5000)"),
    ({"fecha_inicio": "2025-02-01", "fecha_fin": "2025-01-01"}, "fecha_fin (2025-01-01T00:00:00Z) must be after fecha_inicio"),
    ({"fecha_inicio": "01/02/2025", "fecha_fin": "2025-03-01"}, "fecha_inicio must be an ISO date or datetime in UTC"),
    ({"fecha_inicio": "2025-01-01", "fecha_fin": "2025-03-01", "sink": "parquet"}, "sink must be one of txt, postgres, both"),
])
def test_bad_runtime_variable_fails_the_planner_with_a_clear_error(variables, message, emulator, env):
    run = run_pipeline("qb_item_backfill", env, variables)
    assert run.rc == 1
    assert message in run.err, run
    assert emulator.stats()["query_requests"] == 0


def test_unsafe_table_names_fail_the_planner_before_any_request(emulator, env):
    env.update(POSTGRES_HOST="127.0.0.1", POSTGRES_DB="raw", POSTGRES_USER="u", POSTGRES_PASSWORD="p")
    for variables in ({"pg_schema": 'raw"; drop table x; --'}, {"pg_table_prefix": "qb-"}):
        run = run_pipeline("qb_item_backfill", env, dict(variables, fecha_inicio="2025-01-01", fecha_fin="2025-02-01",
                                                          sink="postgres"))
        assert run.rc == 1 and "pg_schema=" in run.err and "pg_table_prefix=" in run.err, run
        assert "block_run qb_plan_windows" in run.out and not [l for l in run.out.splitlines()
                                                               if l.strip().startswith("block_run qb_fetch_window:")]
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
    assert result == [["0001-01-01T00:00:00Z", True], ["2025-01-01T00:00:00.250000Z", True],
                      ["2025-03-09T09:30:00Z", True]]


def test_a_sub_second_range_runs_without_an_alert(emulator, env):
    run = run_pipeline("qb_item_backfill", env, dict(fecha_inicio="2015-01-01T00:00:00.250Z",
                                                     fecha_fin="2026-01-01T00:00:00.750Z", chunk_days="3650"))
    assert run.rc == 0, run
    assert "Validation: Integrity Check Passed" in run.out and "[ALERT]" not in run.out + run.err


def test_a_data_dir_that_is_a_file_fails_the_planner_by_name(emulator, env, tmp_path: Path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    run = run_pipeline("qb_item_backfill", env, dict(fecha_inicio="2025-01-01", fecha_fin="2025-02-01", data_dir=str(a_file)))
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
    assert ok[0] == ["invoice", "2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00", 50, 7, "both", None,
                     "/x/data"]
    assert ok[1] == ["invoice", "2025-01-01T00:00:00+00:00", "2025-02-02T00:00:00+00:00", 1000, 1, "txt",
                     ["invoice_backfill_2025-01-01", "invoice_backfill_2025-01-02"], "/x/data"]
    assert ok[2][1:6] == ["2025-01-01T00:00:00+00:00", "2025-01-01T12:30:00+00:00", 1000, 50, "txt"]  # the default page
    assert bad == [
        "fecha_inicio is required: an ISO date or datetime in UTC, e.g. 2025-01-01",
        "fecha_fin must be an ISO date or datetime in UTC, like 2025-01-01 or 2025-01-01T00:00:00Z (got '2025-13-01')",
        "page_size must be between 1 and 1000 (got 0)",
        "page_size must be a whole number between 1 and 1000 (got '12.5')",
        "page_size must be a whole number between 1 and 1000 (got True)",
        "chunk_days must be between 1 and 36600 (got 0)",
        "fecha_inicio must be an ISO date string like 2025-01-01 (got int 20250101)",
    ]


def test_every_mage_worker_draws_on_one_realm_budget(tmp_path: Path):
    """Each window's client asks for the realm's whole budget through the machine-wide budget
    file, so parallel workers share it (tests/mage/test_triggers_scheduler.py runs them)."""
    from qbo_rs.testing import QboEmulator

    with QboEmulator(seed=3, invoices=10, customers=5, items=5) as emu:
        env = base_env(tmp_path)
        env.update(emu.env(), QBO_TOKEN_STORE=str(tmp_path / "t.json"))
        result = mage_python(r"""
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
""" % str(PROJECT), env=env)
    assert result[0] == [490, 10]
    first, second = result[1]
    assert first == second and first.startswith(str(tmp_path / "budget")), result
    assert result[2] == "QBO_RS_REALM_RPM must be at least 1 (got 0)"
