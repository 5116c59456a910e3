"""QboEmulator.delete / create / deleted and the cdc_max_objects knob, seen through the emulator's
own API (queries and CDC over HTTP) as a sync would see them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

import pytest
import requests

from qbo_rs.exceptions import ConfigError
from qbo_rs.testing import QboEmulator


def _token(emu: QboEmulator) -> str:
    env = emu.env()
    r = requests.post(
        emu.token_url,
        auth=(env["QBO_CLIENT_ID"], env["QBO_CLIENT_SECRET"]),
        data={"grant_type": "refresh_token", "refresh_token": env["QBO_REFRESH_TOKEN"]},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


def _query(emu: QboEmulator, token: str, statement: str) -> Dict[str, Any]:
    r = requests.get(
        f"{emu.base_url}/v3/company/{emu.realm_id}/query",
        params={"query": statement},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["QueryResponse"]


def _cdc(emu: QboEmulator, token: str, entities: str) -> List[Dict[str, Any]]:
    """The groups of a CDC answer for changes in the last hour."""
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = requests.get(
        f"{emu.base_url}/v3/company/{emu.realm_id}/cdc",
        params={"entities": entities, "changedSince": since},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return [g for g in r.json()["CDCResponse"][0]["QueryResponse"] if g]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_delete_create_and_deleted_as_a_sync_sees_them():
    with QboEmulator(seed=5, invoices=40, customers=12, items=6) as emu:
        token = _token(emu)
        done = emu.delete("Invoice", "7")
        assert (done["outcome"], done["entity"], done["id"]) == ("deleted", "Invoice", "7")
        deleted_at = _utc(done["deleted_at"])
        assert len(done["deleted_at"]) == 24 and done["deleted_at"][19] == ".", "milliseconds"
        assert emu.deleted("Invoice") == [{"id": "7", "deleted_at": done["deleted_at"]}]
        assert "7" not in {row["id"] for row in emu.truth("Invoice")}
        assert _query(emu, token, "SELECT COUNT(*) FROM Invoice")["totalCount"] == 39
        assert _query(emu, token, "SELECT * FROM Invoice WHERE Id = '7'") == {}
        with pytest.raises(ConfigError, match="already deleted"):
            emu.delete("Invoice", "7")
        with pytest.raises(ConfigError):
            emu.delete("Invoice", "999")

        customer = next(row for row in emu.truth("Customer") if row["active"])
        inactive = emu.delete("Customer", customer["id"])
        assert inactive["outcome"] == "made_inactive"
        assert inactive["record"]["active"] is False
        assert int(inactive["record"]["sync_token"]) == int(customer["sync_token"]) + 1
        assert emu.deleted("Customer") == []
        assert inactive["record"] in emu.truth("Customer")

        created = emu.create("Invoice")
        assert (created["Id"], created["SyncToken"]) == ("41", "0")
        assert created["MetaData"]["CreateTime"] == created["MetaData"]["LastUpdatedTime"]
        again = emu.create("Invoice", id="7")
        assert again["Id"] == "7"
        assert datetime.fromisoformat(again["MetaData"]["LastUpdatedTime"]) > deleted_at, "newer than its deletion"
        assert emu.deleted("Invoice") == []
        with pytest.raises(ConfigError, match="exists"):
            emu.create("Invoice", id="7")

        groups = _cdc(emu, token, "Invoice,Customer")
        by_entity = {next(k for k in g if isinstance(g[k], list)): g for g in groups}
        assert {o["Id"] for o in by_entity["Invoice"]["Invoice"]} == {"41", "7"}
        [customer_change] = by_entity["Customer"]["Customer"]
        assert customer_change["Active"] is False and customer_change["DisplayName"].endswith(" (deleted)")


def test_cdc_max_objects_is_a_knob_like_the_others():
    with QboEmulator(seed=5, invoices=20, customers=5, items=3, cdc_max_objects=3) as emu:
        assert emu.knobs()["cdc_max_objects"] == 3
        token = _token(emu)
        for record_id in ("2", "3"):
            emu.edit("Invoice", record_id)
        for record_id in ("4", "5"):
            emu.delete("Invoice", record_id)
        [group] = _cdc(emu, token, "Invoice")
        assert [(o["Id"], o.get("status")) for o in group["Invoice"]][:2] in (
            [("2", None), ("3", None)],
            [("3", None), ("2", None)],
        )
        stub = group["Invoice"][2]
        assert (sorted(stub), stub["domain"], stub["status"], stub["Id"]) == (
            ["Id", "MetaData", "domain", "status"],
            "QBO",
            "Deleted",
            "4",
        )
        first_deletion = _utc(emu.deleted("Invoice")[0]["deleted_at"])
        assert datetime.fromisoformat(stub["MetaData"]["LastUpdatedTime"]) == first_deletion.replace(microsecond=0)
        assert group["maxResults"] == group["totalCount"] == 3
        emu.set_knobs(cdc_max_objects=1000)
        [group] = _cdc(emu, token, "Invoice")
        assert [o.get("status") for o in group["Invoice"]] == [None, None, "Deleted", "Deleted"]
        assert [o["Id"] for o in group["Invoice"][2:]] == [row["id"] for row in emu.deleted("Invoice")] == ["4", "5"]
