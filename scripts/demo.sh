#!/usr/bin/env bash
# make demo: start the bundled QBO emulator, backfill the three entities into data/*.txt,
# and print the per-window and total lines. Usage: demo.sh QBO_RS_BIN START END
set -euo pipefail
qbo="$1"; start="$2"; end="$3"
. "$(dirname "$0")/demo_emulator.sh"
work=$(mktemp -d)
emu_pid=""
trap '[ -n "$emu_pid" ] && { kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT

start_demo_emulator "$qbo" "$work"
export QBO_TOKEN_STORE="$work/tokens.json"
echo "emulator at $QBO_BASE_URL (realm $QBO_REALM_ID); window [$start, $end)"
for entity in invoice customer item; do
    "$qbo" backfill "$entity" --start "$start" --end "$end" --chunk-days 50 --page-size 100 --sink txt --data-dir data --no-progress
done
echo
wc -l data/invoices.txt data/customers.txt data/items.txt
