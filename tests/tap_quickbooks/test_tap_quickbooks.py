"""singer-io's tap-quickbooks 2.5.0, a third-party client, against the bundled emulator: it
discovers, syncs invoices, customers and items through QuickBooks' batch endpoint, and syncs
again incrementally from its own state; what it emits is the emulator's truth, and the emulator
counts its batches, their items and its metered reads as QuickBooks would.

The tap reaches the emulator through run_tap.py (its two hard-coded Intuit hosts pointed at the
emulator) and OAUTHLIB_INSECURE_TRANSPORT (plain HTTP); its config is the emulator's credentials.
Only the three streams the emulator serves are selected: the tap's other streams query entities
the emulator does not have (Account, Bill, ...), and its deleted_objects stream reads CDC since
start_date, beyond QuickBooks' 30-day look-back.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import requests

from qbo_rs.testing import QboEmulator

from .conftest import run_tap, select_streams

STREAMS = {"invoices": "Invoice", "customers": "Customer", "items": "Item"}
PAGE = 1000  # the tap's default max_results


def emitted(messages: List[Dict[str, Any]]) -> Dict[str, Dict[str, str]]:
    """{stream: {Id: SyncToken}} of the RECORD messages."""
    out: Dict[str, Dict[str, str]] = {name: {} for name in STREAMS}
    for m in messages:
        if m["type"] == "RECORD":
            assert m["record"]["Id"] not in out[m["stream"]], f"{m['stream']} {m['record']['Id']} twice"
            out[m["stream"]][m["record"]["Id"]] = m["record"]["SyncToken"]
    return out


def last_state(messages: List[Dict[str, Any]]) -> Dict[str, Any]:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert states, "the tap wrote no state"
    return states[-1]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_tap_quickbooks_discovers_and_syncs_what_the_emulator_holds(tmp_path: Path) -> None:
    with QboEmulator(seed=31, invoices=2500, customers=120, items=60, refresh_rotate_after_secs=0) as emu:
        env = emu.env()
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {
                    "client_id": env["QBO_CLIENT_ID"],
                    "client_secret": env["QBO_CLIENT_SECRET"],
                    "refresh_token": env["QBO_REFRESH_TOKEN"],
                    "realm_id": env["QBO_REALM_ID"],
                    "start_date": "2014-01-01T00:00:00Z",
                    "user_agent": "qbo_rs tests (tap-quickbooks against the emulator)",
                    "sandbox": "false",
                }
            )
        )

        def tap(*args: str) -> List[Dict[str, Any]]:
            run = run_tap(emu.base_url, emu.token_url, ["--config", str(config), *args])
            assert run.rc == 0, run
            return run.messages()

        def current_refresh_token() -> str:
            creds = requests.get(emu.base_url + "/_emulator/credentials", timeout=10).json()
            return str(creds["current_refresh_token"])

        # Discovery: the tap checks its authorisation with a CompanyInfo read, then lists its streams.
        discovered = run_tap(emu.base_url, emu.token_url, ["--config", str(config), "--discover"])
        assert discovered.rc == 0, discovered
        catalog = json.loads(discovered.out)
        assert set(STREAMS) <= {s["tap_stream_id"] for s in catalog["streams"]}
        assert emu.stats()["requests"]["read"] == {"200": 1}
        # The emulator rotated the refresh token on the tap's refresh (rotate_after 0), and the tap
        # wrote the new one into its config: the next run can only work with that one.
        assert json.loads(config.read_text())["refresh_token"] == current_refresh_token() != env["QBO_REFRESH_TOKEN"]

        # A full sync of the three streams the emulator serves.
        catalog_path = tmp_path / "catalog.json"
        catalog_path.write_text(json.dumps(select_streams(catalog, list(STREAMS))))
        before = emu.stats()
        messages = tap("--catalog", str(catalog_path))
        after = emu.stats()
        got = emitted(messages)
        truth = {stream: emu.truth(entity) for stream, entity in STREAMS.items()}
        for stream, rows in truth.items():
            assert got[stream] == {r["id"]: r["sync_token"] for r in rows}, f"{stream}: every record, inactive ones too"
        state = last_state(messages)
        for stream, rows in truth.items():
            newest = max(rows, key=lambda r: (instant(r["last_updated_utc"]), int(r["id"])))
            assert state["bookmarks"][stream]["LastUpdatedTime"] == newest["last_updated_time"]
        # One batch per round of pages (three items each) until a round comes back empty: each
        # item a call in the realm's minute and a metered read, the batch one of its 40 a minute.
        rounds = max(math.ceil(len(rows) / PAGE) for rows in truth.values()) + 1
        assert after["requests"]["batch"] == {"200": rounds}
        assert after["metered_calls"] - before["metered_calls"] == len(STREAMS) * rounds
        assert after["max_requests_in_60s"] >= len(STREAMS) * rounds
        assert after["throttled"] == 0

        # An incremental sync from the tap's own state picks up what changed since, and the
        # records at its bookmark's second again (it reads `>=`, as it should).
        edited = [emu.edit("Invoice", "7"), emu.edit("Invoice", "1999"), emu.edit("Customer", "3")]
        state_path = tmp_path / "state.json"
        state_path.write_text(json.dumps(state))
        again = emitted(tap("--catalog", str(catalog_path), "--state", str(state_path)))
        for stream, entity in STREAMS.items():
            since = instant(state["bookmarks"][stream]["LastUpdatedTime"])
            expected = {r["id"]: r["sync_token"] for r in emu.truth(entity) if instant(r["last_updated_utc"]) >= since}
            assert again[stream] == expected, stream
        assert {row["id"]: row["sync_token"] for row in edited[:2]}.items() <= again["invoices"].items()
        assert again["customers"][edited[2]["id"]] == edited[2]["sync_token"]
