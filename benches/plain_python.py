"""The plain-Python equivalent the benchmark compares against: requests + json, the same
windows and page size, the same RAW line format, the same file. Sequential, as a typical
hand-written extractor is. (It pages with STARTPOSITION, which is cheaper than our keyset
reads but loses records under edits; here nothing is edited, so the pages are the same.)

Usage: plain_python.py OUT_FILE START END CHUNK_DAYS PAGE_SIZE  (credentials from QBO_* env)
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone

import requests


def main() -> int:
    out_path, start, end, chunk_days, page_size = (
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        int(sys.argv[4]),
        int(sys.argv[5]),
    )
    env = os.environ
    token = requests.post(
        env["QBO_TOKEN_URL"],
        auth=(env["QBO_CLIENT_ID"], env["QBO_CLIENT_SECRET"]),
        data={"grant_type": "refresh_token", "refresh_token": env["QBO_REFRESH_TOKEN"]},
        headers={"Accept": "application/json"},
        timeout=60,
    ).json()["access_token"]
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/text"}
    )
    url = f"{env['QBO_BASE_URL']}/v3/company/{env['QBO_REALM_ID']}/query"
    lo = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    hi = datetime.fromisoformat(end).replace(tzinfo=timezone.utc)
    total = 0
    with open(out_path, "w") as out:
        while lo < hi:
            w_end = min(lo + timedelta(days=chunk_days), hi)
            a, b = lo.strftime("%Y-%m-%dT%H:%M:%S+00:00"), w_end.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            page, position = 1, 1
            while True:
                stmt = (
                    f"SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '{a}' AND MetaData.LastUpdatedTime < '{b}' "
                    f"ORDERBY MetaData.LastUpdatedTime STARTPOSITION {position} MAXRESULTS {page_size}"
                )
                resp = session.post(url, params={"minorversion": 75}, data=stmt, timeout=120)
                resp.raise_for_status()
                rows = resp.json()["QueryResponse"].get("Invoice", [])
                now = datetime.now(timezone.utc).isoformat()
                for row in rows:
                    lut = datetime.fromisoformat(row["MetaData"]["LastUpdatedTime"]).astimezone(timezone.utc)
                    line = {
                        "id": row["Id"],
                        "realm_id": env["QBO_REALM_ID"],
                        "entity": "Invoice",
                        "last_updated_utc": lut.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "sync_token": row.get("SyncToken", "0"),
                        "ingested_at_utc": now,
                        "extract_window_start_utc": a,
                        "extract_window_end_utc": b,
                        "page_number": page,
                        "page_size": page_size,
                        "payload": row,
                    }
                    out.write(json.dumps(line, separators=(",", ":")) + "\n")
                total += len(rows)
                if len(rows) < page_size:
                    break
                page += 1
                position += page_size
            lo = w_end
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
