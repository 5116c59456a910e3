"""Smoke test: the ej2 `python-quickbooks` client (with Intuit's `intuit-oauth`) against the emulator.

Run:
    cargo run --release -p qbo_emulator --example serve -- '{"port":18765,"invoices":3000,"knobs":{"refresh_rotate_after_secs":0}}' > /tmp/serve.out &
    pip install python-quickbooks            # brings intuit-oauth, requests-oauthlib
    OAUTHLIB_INSECURE_TRANSPORT=1 python crates/qbo_emulator/scripts/python_quickbooks_smoke.py /tmp/serve.out

The emulator speaks plain HTTP, so oauthlib needs OAUTHLIB_INSECURE_TRANSPORT=1. intuit-oauth takes
a discovery-document URL as its `environment`; the emulator serves one whose token endpoint is
itself. python-quickbooks is pointed at the emulator by overriding `QuickBooks.api_url_v3`.
"""
import json
import sys

info = json.loads(open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/serve.out").readline())
from intuitlib.client import AuthClient
from quickbooks import QuickBooks
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.customer import Customer
from quickbooks.objects.item import Item
from quickbooks.exceptions import QuickbooksException, AuthorizationException

auth = AuthClient(info["client_id"], info["client_secret"], "http://localhost/callback",
                  environment=info["discovery_url"], refresh_token=info["refresh_token"])
auth.refresh()
print("refreshed; rotated:", auth.refresh_token != info["refresh_token"], "access len", len(auth.access_token))
QuickBooks.api_url_v3 = info["api_url"]
qb = QuickBooks(auth_client=auth, refresh_token=auth.refresh_token, company_id=info["realm_id"], minorversion=75)
print("Invoice.count:", Invoice.count(qb=qb))
print("Customer.count (active only):", Customer.count(qb=qb))
print("Customer.count Active IN (true,false):", Customer.count(where_clause="Active IN (true, false)", qb=qb))
invs = Invoice.all(max_results=5, qb=qb)
print("Invoice.all:", [(i.Id, i.DocNumber, i.TotalAmt, i.MetaData.LastUpdatedTime) for i in invs])
items = Item.all(max_results=3, qb=qb)   # sends SELECT *, Sku FROM Item
print("Item.all:", [(i.Id, i.Name, i.Type) for i in items])
rows = Invoice.query("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2020-01-01T00:00:00-08:00' ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000", qb=qb)
print("window query rows:", len(rows), "first lines:", len(rows[0].Line))
c = Customer.filter(Active=False, qb=qb)
print("inactive customers via filter:", len(c), c[0].DisplayName if c else None)
one = Invoice.get(7, qb=qb)
print("Invoice.get(7):", one.Id, one.CustomerRef.name)
try:
    Invoice.query("SELECT * FROM Invoic", qb=qb)
except QuickbooksException as e:
    print("validation fault ->", type(e).__name__, e.error_code, e.message, e.detail)
import requests; r = requests.post(info["token_url"], data={"grant_type":"refresh_token","refresh_token":info["refresh_token"]}, auth=(info["client_id"], info["client_secret"])); print("old refresh token ->", r.status_code, r.text)
qb.session.access_token = "x" * 40
try:
    print("count with bad token returned", Invoice.count(qb=qb))
except QuickbooksException as e:
    print("bad token ->", type(e).__name__, e.error_code if hasattr(e, "error_code") else "", str(e)[:80])
