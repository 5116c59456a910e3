#!/usr/bin/env bash
# make demo, the Mage path: start the bundled QBO emulator, put its credentials into Mage Secrets
# headlessly, run qb_invoice_backfill, qb_customer_backfill and qb_item_backfill through Mage
# (scripts/mage_run_pipeline.py: dynamic windows, a fetch and an export block run each) into data/*.txt, and print
# each window's and each pipeline's lines.
# Usage: scripts/mage_demo.sh [MAGE_PYTHON] [START] [END]. Mage's own logs go to a file (path printed).
# MAGE_DATA_DIR: a throwaway one unless set (the demo's secrets and runs then vanish with it).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${1:-$repo/.venv-mage/bin/python}"
start="${2:-2015-01-01}"
end="${3:-2026-01-01}"
chunk_days="${CHUNK_DAYS:-50}"
bindir="$(dirname "$py")"
work="$(mktemp -d)"
emu_pid=""
cleanup() {
    [ -n "$emu_pid" ] && { kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; }
    if [ "${keep:-no}" = yes ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

. "$repo/scripts/demo_emulator.sh"
start_demo_emulator "$bindir/qbo-rs" "$work"
export MAGE_DATA_DIR="${MAGE_DATA_DIR:-$work/mage_data}"
export QBO_DATA_DIR="$repo/data"
echo "emulator at $QBO_BASE_URL (realm $QBO_REALM_ID); MAGE_DATA_DIR=$MAGE_DATA_DIR; window [$start, $end), chunk_days=$chunk_days"

"$py" "$repo/scripts/mage_secrets.py" from-env 2>>"$work/mage.log"
# From here on the pipelines read Mage Secrets, not the environment (only the emulator's URLs stay).
unset QBO_CLIENT_ID QBO_CLIENT_SECRET QBO_REFRESH_TOKEN QBO_REALM_ID

status=0
for entity in invoice customer item; do
    echo
    echo "== qb_${entity}_backfill"
    if ! "$py" "$repo/scripts/mage_run_pipeline.py" "qb_${entity}_backfill" \
            --var fecha_inicio="$start" --var fecha_fin="$end" --var chunk_days="$chunk_days" \
            --var page_size=100 --var sink=txt 2>>"$work/mage.log" \
            | grep -v '^  block_run '; then
        status=1
        keep=yes
    fi
done
echo
wc -l "$repo/data/invoices.txt" "$repo/data/customers.txt" "$repo/data/items.txt"
exit "$status"
