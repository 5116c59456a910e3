"""A real third-party client, ej2's python-quickbooks with Intuit's intuit-oauth, talks to the
bundled emulator unchanged (three settings: the discovery URL as intuit-oauth's environment,
QuickBooks.api_url_v3, and OAUTHLIB_INSECURE_TRANSPORT because the emulator is plain HTTP)."""

from __future__ import annotations

import intuitlib.client
import pytest
import requests

from qbo_rs.testing import QboEmulator


def _connect(emu: QboEmulator, monkeypatch):
    """python-quickbooks on the emulator, its token refreshed once through intuit-oauth."""
    from quickbooks import QuickBooks

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    env = emu.env()
    auth = intuitlib.client.AuthClient(
        env["QBO_CLIENT_ID"],
        env["QBO_CLIENT_SECRET"],
        "http://localhost/callback",
        environment=emu.base_url + "/.well-known/openid_configuration",
        refresh_token=env["QBO_REFRESH_TOKEN"],
    )
    auth.refresh()
    monkeypatch.setattr(QuickBooks, "api_url_v3", emu.base_url + "/v3")
    return QuickBooks(auth_client=auth, refresh_token=auth.refresh_token, company_id=emu.realm_id, minorversion=75)


def test_python_quickbooks_reads_the_emulator(monkeypatch):
    from quickbooks.exceptions import QuickbooksException
    from quickbooks.objects.customer import Customer
    from quickbooks.objects.invoice import Invoice

    with QboEmulator(seed=21, invoices=300, customers=80, items=20, refresh_rotate_after_secs=0) as emu:
        env = emu.env()
        qb = _connect(emu, monkeypatch)
        assert qb.refresh_token != env["QBO_REFRESH_TOKEN"], "the emulator rotates on every refresh here"

        customers = emu.truth("Customer")
        assert Invoice.count(qb=qb) == 300
        assert Customer.count(qb=qb) == sum(1 for c in customers if c["active"]), (
            "inactive hidden by default, as in QBO"
        )
        assert Customer.count(where_clause="Active IN (true, false)", qb=qb) == len(customers)
        invoices = Invoice.query(
            "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000", qb=qb
        )
        assert {i.Id for i in invoices} == {r["id"] for r in emu.truth("Invoice")}
        assert all(len(i.Line) >= 2 for i in invoices)
        with pytest.raises(QuickbooksException) as fault:
            Invoice.query("SELECT * FROM Invoic", qb=qb)
        assert str(fault.value.error_code) == "4001"
        old = requests.post(
            env["QBO_TOKEN_URL"],
            auth=(env["QBO_CLIENT_ID"], env["QBO_CLIENT_SECRET"]),
            data={"grant_type": "refresh_token", "refresh_token": env["QBO_REFRESH_TOKEN"]},
            timeout=10,
        )
        assert old.status_code == 400 and old.json()["error"] == "invalid_grant"


def test_an_all_without_orderby_gets_the_default_order_the_knob_picks(monkeypatch):
    """python-quickbooks' ``all()`` sends no ORDERBY, so what it gets is the order QuickBooks
    leaves unspecified: the emulator answers as recorded sandbox answers came (newest invoice
    first) or, with ``default_order="Id"``, by ascending Id."""
    from quickbooks.objects.invoice import Invoice

    with QboEmulator(seed=22, invoices=120, customers=10, items=10) as emu:
        qb = _connect(emu, monkeypatch)

        truth = emu.truth("Invoice")
        newest_first = [r["id"] for r in sorted(truth, key=lambda r: (-_instant(r), int(r["id"])))]
        assert emu.knobs()["default_order"] == "Observed"
        assert [i.Id for i in Invoice.all(max_results=20, qb=qb)] == newest_first[:20]
        assert [i.Id for i in Invoice.all(start_position=21, max_results=20, qb=qb)] == newest_first[20:40]

        emu.set_knobs(default_order="Id")
        assert [i.Id for i in Invoice.all(max_results=20, qb=qb)] == [str(n) for n in range(1, 21)]
        assert [i.Id for i in Invoice.all(start_position=21, max_results=20, qb=qb)] == [str(n) for n in range(21, 41)]


def _instant(row: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(row["last_updated_utc"].replace("Z", "+00:00")).timestamp()
