"""make bench: what one `sync` costs beside a full re-backfill (prints figures, asserts nothing).

The emulator holds N invoices (100,000 by default) and paces like QuickBooks (500 requests a
minute, 10 in flight); the client keeps its default pace (490 a minute). After a backfill of
everything, 1% of the invoices are edited and 0.1% deleted, then:

1. one `sync`: those changes exceed what one Change Data Capture answer may hold (1,000
   objects), so the sync reconciles (reads every invoice) and says so;
2. the same volume of changes in ten slices, a `sync` after each: every slice fits in one CDC
   answer, so each sync reads only what changed (what an hourly trigger sees);
3. a full re-backfill of the same range into an empty folder, the alternative without `sync`.

Each run's requests by kind, wall time and result are printed; every sync is checked against
the emulator's truth (live records and deleted ids), which is the one thing asserted.

Usage: sync_bench.py [--invoices N] [--smoke]   (--smoke: 3,000 invoices, for make test)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import qbo_rs
from qbo_rs.testing import QboEmulator

START, END = "2015-01-01", "2027-01-01"


def live_and_deleted(data_dir: Path) -> Tuple[Dict[str, str], Set[str]]:
    """Live ids -> sync token, and the ids marked deleted, read with qbo_rs's own reader."""
    rows = qbo_rs.read_txt(data_dir / "invoices.txt").to_pyarrow().select(["id", "sync_token", "deleted_at_utc"])
    live = {r["id"]: str(r["sync_token"]) for r in rows.to_pylist() if r["deleted_at_utc"] is None}
    return live, {r["id"] for r in rows.to_pylist() if r["deleted_at_utc"] is not None}


def check(emu: QboEmulator, data_dir: Path, held: Set[str]) -> None:
    live, deleted = live_and_deleted(data_dir)
    truth = {r["id"]: r["sync_token"] for r in emu.truth("Invoice")}
    gone = {d["id"] for d in emu.deleted("Invoice")} & held
    assert live == truth and deleted == gone, "the sink differs from the emulator's truth"


def change(emu: QboEmulator, ids: List[str], edits: int, deletions: int, rng: random.Random) -> None:
    picked = rng.sample(ids, edits + deletions)
    for rid in picked[:edits]:
        emu.edit("Invoice", rid)
    for rid in picked[edits:]:
        emu.delete("invoice", rid)
        ids.remove(rid)
    time.sleep(1.1)  # a sync reads up to the last whole second before QuickBooks' clock


def line(name: str, seconds: float, by_kind: Dict[str, int], extra: str) -> str:
    calls = sum(by_kind.get(k, 0) for k in ("page", "count", "cdc", "retry"))
    kinds = ", ".join(f"{by_kind.get(k, 0)} {k}" for k in ("page", "count", "cdc", "retry"))
    return f"  {name:<44} {calls:>5} requests ({kinds}) {seconds:>7.1f} s  {extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 3_000 if args.smoke else args.invoices
    edits, deletions = max(n // 100, 1), max(n // 1000, 1)
    rng = random.Random(7)
    print(f"sync vs re-backfill: {n:,} invoices; {edits:,} edited (1%) and {deletions:,} deleted (0.1%)")
    with tempfile.TemporaryDirectory() as tmp, QboEmulator(seed=5, invoices=n, customers=20, items=20) as emu:
        client = qbo_rs.QboClient(emu.credentials(), token_store=None, limiter_dir=None)
        one, sliced, fresh = Path(tmp, "one"), Path(tmp, "sliced"), Path(tmp, "fresh")
        for folder in (one, sliced):
            client.backfill("invoice", START, END, data_dir=folder)
        ids = [r["id"] for r in emu.truth("Invoice")]
        held = set(ids)

        # 1. All the changes, then one sync.
        change(emu, ids, edits, deletions, rng)
        began = time.monotonic()
        report = client.sync("invoice", data_dir=one)
        took = time.monotonic() - began
        check(emu, one, held)
        print(
            line(
                "one sync after all the changes",
                took,
                report.requests_by_kind,
                f"{report.mode}: {report.updated} updated, {report.deleted} deleted",
            )
        )
        if report.reason:
            print(f"    why: {report.reason}")

        # 2. The same volume in ten slices (new changes), a sync after each. The folder first
        # catches up with part 1's changes, so the slices measure only their own.
        client.sync("invoice", data_dir=sliced)
        totals: Dict[str, int] = {}
        took, modes, updated, deleted = 0.0, set(), 0, 0
        for _ in range(10):
            change(emu, ids, max(edits // 10, 1), max(deletions // 10, 1), rng)
            began = time.monotonic()
            r = client.sync("invoice", data_dir=sliced)
            took += time.monotonic() - began
            modes.add(r.mode)
            updated, deleted = updated + r.updated, deleted + r.deleted
            for k, v in r.requests_by_kind.items():
                totals[k] = totals.get(k, 0) + v
        check(emu, sliced, held)
        print(
            line(
                "ten syncs, each after a tenth of the changes",
                took,
                totals,
                f"{'/'.join(sorted(modes))}: {updated} updated, {deleted} deleted",
            )
        )

        # 3. The alternative: back-fill everything again.
        began = time.monotonic()
        full = client.backfill("invoice", START, END, data_dir=fresh)
        took = time.monotonic() - began
        print(line("full re-backfill of the same range", took, full.requests_by_kind, f"{full.total_rows:,} rows"))


if __name__ == "__main__":
    main()
