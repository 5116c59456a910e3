#!/usr/bin/env bash
# make demo: start the bundled QBO emulator, backfill the three entities into data/*.txt,
# and print the per-window and total lines. Usage: demo.sh QBO_RS_BIN START END
set -euo pipefail
qbo="$1"; start="$2"; end="$3"
work=$(mktemp -d)
trap 'kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$qbo" emulator --port 0 --seed 42 --invoices 5000 --customers 400 --items 200 >"$work/env" 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 1 100); do
    [ "$(grep -c '^QBO_' "$work/env" 2>/dev/null || true)" -ge 6 ] && break
    sleep 0.1
done
[ "$(grep -c '^QBO_' "$work/env" || true)" -ge 6 ] || { echo "emulator did not start:"; cat "$work/emulator.log"; exit 1; }
set -a; . "$work/env"; set +a
export QBO_TOKEN_STORE="$work/tokens.json"
echo "emulator at $QBO_BASE_URL (realm $QBO_REALM_ID); window [$start, $end)"
for entity in invoice customer item; do
    "$qbo" backfill "$entity" --start "$start" --end "$end" --chunk-days 50 --page-size 100 --sink txt --data-dir data --no-progress
done
echo
wc -l data/invoices.txt data/customers.txt data/items.txt
