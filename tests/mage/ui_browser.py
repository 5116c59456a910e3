"""Drives Mage's UI in Debian's Chromium with Playwright for Python, the way a user does, for
tests/mage/test_ui_browser.py (run in the small venv that holds Playwright: `make test` makes
.venv-ui and passes it as QBO_RS_UI_PYTHON).

  ui_browser.py URL OUT_DIR FECHA_INICIO FECHA_FIN

Signs in (admin@admin.com / admin, Mage's default owner), lists the pipelines, opens
qb_invoice_backfill's triggers, clicks "Run@once" and "Run now" as the form opens (the run fails
at its first block: its log must say why in one line), then "Run@once" again with fecha_inicio
and fecha_fin typed into the form's own fields, waits for that run, and opens the summary block's
log from the run page. A screenshot per step goes to OUT_DIR. Prints one JSON object of what the
pages showed (the test asserts on it); on a step that does not come, it saves failure.png and
exits 1 naming the step.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

PIPELINE = "qb_invoice_backfill"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 90_000  # generous: two shared cores, Mage's pages poll its API
RUN_DEADLINE_S = 420  # a run's wait, scheduler ticks (10 s) included


class Step:
    """Names the step in progress, for the failure message, and numbers the screenshots."""

    def __init__(self, page: Page, out: Path) -> None:
        self.page, self.out, self.n, self.name, self.shots = page, out, 0, "start", []

    def __call__(self, name: str) -> None:
        self.name = name

    def shot(self, name: str) -> None:
        self.n += 1
        path = self.out / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path.name)


def run_ids(page: Page, url: str, at_least: int) -> set:
    """The ids of the pipeline's runs listed on its Runs page, once it lists ``at_least`` (the
    page renders its table before the runs arrive)."""
    link = page.locator(f"a[href^='/pipelines/{PIPELINE}/runs/']")
    page.goto(f"{url}/pipelines/{PIPELINE}/runs")
    if at_least:
        link.nth(at_least - 1).wait_for()
    hrefs = [link.nth(i).get_attribute("href") or "" for i in range(link.count())]
    return {int(m.group(1)) for h in hrefs if (m := re.search(r"/runs/(\d+)$", h))}


def new_run(page: Page, url: str, before: set) -> int:
    """The run the scheduler made for the trigger just created (it fires on its next tick)."""
    deadline = time.time() + RUN_DEADLINE_S
    while time.time() < deadline:
        fresh = {i for i in run_ids(page, url, len(before)) if i > max(before, default=0)}
        if fresh:
            return max(fresh)
        page.wait_for_timeout(3000)
    raise TimeoutError(f"no new run of {PIPELINE} within {RUN_DEADLINE_S} s")


def block_row(page: Page, block: str):
    return page.locator("tr").filter(has=page.get_by_text(block, exact=True)).first


def wait_block_status(page: Page, url: str, run_id: int, block: str, wanted: set) -> str:
    """Reloads the run page until ``block``'s block run has one of the ``wanted`` statuses."""
    deadline = time.time() + RUN_DEADLINE_S
    status = ""
    while time.time() < deadline:
        page.goto(f"{url}/pipelines/{PIPELINE}/runs/{run_id}")
        row = block_row(page, block)
        try:
            row.wait_for(timeout=15_000)
            status = row.locator("td").first.inner_text().strip().lower()
        except Exception:
            status = ""  # its block run does not exist yet
        if status in wanted:
            return status
        page.wait_for_timeout(3000)
    raise TimeoutError(f"block run {block} of run {run_id} is {status!r}, not one of {sorted(wanted)}")


def wait_run_status(page: Page, url: str, run_id: int, wanted: str) -> str:
    """Reloads the Runs page until run ``run_id`` shows ``wanted`` (Mage's scheduler settles a
    run's status a tick after its last block run ends)."""
    deadline = time.time() + RUN_DEADLINE_S
    status = ""
    while time.time() < deadline:
        run_ids(page, url, 1)
        # Columns: a checkbox, Status ("Done", "Failed", ...), Logs, ID, ...
        rows = [[c.inner_text().strip() for c in r.locator("td").all()] for r in page.locator("tr").all()]
        status = next((cells[1].lower() for cells in rows if len(cells) > 3 and cells[3] == str(run_id)), "")
        if status == wanted:
            return status
        page.wait_for_timeout(3000)
    raise TimeoutError(f"run {run_id} is {status!r}, not {wanted!r}")


def open_block_log(page: Page, block: str, text: str) -> list:
    """From the run page, the Logs button of ``block``'s row; waits for ``text`` in the log and
    returns the log's messages (the lines of the Message column)."""
    block_row(page, block).locator("td").nth(1).locator("a, button").first.click()
    page.get_by_text(text).first.wait_for()
    body = page.locator("body").inner_text()
    return [line.strip() for line in body.splitlines() if line.strip()]


def run_pipeline_now(page: Page, url: str, dates: dict) -> dict:
    """Triggers page, "Run@once", the dates typed into the form's own fields (none if empty),
    "Run now". Returns the form's fields as it opened."""
    page.goto(f"{url}/pipelines/{PIPELINE}/triggers")
    page.get_by_text("qb_invoice_trigger").first.wait_for()
    page.get_by_role("button", name="Run@once").click()
    dialog = page.get_by_text("Run pipeline now").locator(
        "xpath=ancestor::div[.//button[normalize-space()='Run now']][1]"
    )
    dialog.wait_for()
    fields = {}
    rows = dialog.locator("tr")
    for i in range(rows.count()):
        row = rows.nth(i)
        if row.locator("input").count():
            fields[row.locator("td").first.inner_text().strip()] = row.locator("input").first.input_value()
    for name, value in dates.items():
        dialog.locator("tr").filter(has=page.get_by_text(name, exact=True)).locator("input").fill(value)
    return dict(fields=fields, dialog=dialog)


def main(argv) -> int:
    url, out, fecha_inicio, fecha_fin = argv[0].rstrip("/"), Path(argv[1]), argv[2], argv[3]
    out.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="qbo-rs-chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        step = Step(page, out)
        try:
            step("sign in")
            page.goto(f"{url}/sign-in")
            email = page.get_by_placeholder("Email")
            email.wait_for()
            email.fill("admin@admin.com")
            page.get_by_placeholder("Password").fill("admin")
            page.get_by_role("button", name="Sign into Mage").click()
            page.wait_for_url(lambda u: "/sign-in" not in u)

            step("the pipelines listed")
            page.goto(f"{url}/pipelines")
            for name in ("qb_invoice_backfill", "qb_customer_backfill", "qb_item_backfill"):
                page.get_by_text(name, exact=True).first.wait_for()
            seen["pipelines"] = [
                n
                for n in ("qb_invoice_backfill", "qb_customer_backfill", "qb_item_backfill")
                if page.get_by_text(n, exact=True).count()
            ]
            step.shot("pipelines")

            step("the shipped trigger with its schedule")
            page.goto(f"{url}/pipelines/{PIPELINE}/triggers")
            row = page.locator("tr").filter(has=page.get_by_text("qb_invoice_trigger", exact=True)).first
            row.wait_for()
            seen["trigger_row"] = [c.inner_text().strip() for c in row.locator("td").all()]
            step.shot("triggers")

            step("Run pipeline now, as the form opens")
            before = run_ids(page, url, 1)  # the shipped trigger's held run
            form = run_pipeline_now(page, url, {})
            seen["form"] = form["fields"]
            step.shot("run-now-form")
            form["dialog"].get_by_role("button", name="Run now").click()
            failed = new_run(page, url, before)
            seen["failed_run"] = failed
            seen["failed_planner"] = wait_block_status(page, url, failed, "qb_plan_windows", {"failed", "completed"})
            step.shot("failed-run")
            seen["failed_planner_log"] = open_block_log(page, "qb_plan_windows", "RunVariableError")
            step.shot("failed-planner-log")

            step("Run pipeline now, with the dates in the form's own fields")
            before = run_ids(page, url, 2)  # and the failed one
            form = run_pipeline_now(page, url, {"fecha_inicio": fecha_inicio, "fecha_fin": fecha_fin})
            step.shot("run-now-form-filled")
            form["dialog"].get_by_role("button", name="Run now").click()
            run = new_run(page, url, before)
            seen["run"] = run
            seen["summary_status"] = wait_block_status(
                page, url, run, "qb_backfill_summary", {"completed", "failed", "upstream_failed", "cancelled"}
            )
            seen["run_rows"] = {
                cells[2]: cells[0].lower()
                for r in page.locator("tr").all()
                if len(cells := [c.inner_text().strip() for c in r.locator("td").all()]) > 2
            }
            step.shot("run")

            step("the summary block's log")
            seen["summary_log"] = open_block_log(page, "qb_backfill_summary", "Validation:")
            step.shot("summary-log")

            step("the runs listed with their statuses")
            seen["run_status"] = wait_run_status(page, url, run, "done")
            seen["failed_run_status"] = wait_run_status(page, url, failed, "failed")
            step.shot("runs")
        except Exception:
            traceback.print_exc()
            page.screenshot(path=str(out / "failure.png"), full_page=True)
            print(f"step not reached: {step.name} (see {out / 'failure.png'})", file=sys.stderr)
            seen["failed_step"] = step.name
        finally:
            seen["screenshots"] = step.shots
            context.close()
    print(json.dumps(seen))
    return 1 if "failed_step" in seen else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
