#!/usr/bin/env bash
# make mage-ui: the Mage UI (and its scheduler) on http://127.0.0.1:6789 with mage_project loaded.
# Usage: scripts/mage_ui.sh [MAGE_BIN]. MAGE_DATA_DIR defaults to <repo>/mage_data (the same
# database and secrets the headless scripts use); MAGE_PORT to 6789. Ctrl-C stops Mage *and* the
# children it would otherwise orphan (mage-ai 0.9.80 leaves its scheduler and multiprocessing
# manager running when only the server is killed). Mage 0.9.80 requires a login: admin@admin.com /
# admin on a new database unless DEFAULT_OWNER_EMAIL / DEFAULT_OWNER_PASSWORD are set.
#
# The shipped qb_invoice_trigger is @once at a time that has passed: Mage's scheduler would start
# that full historical backfill on its first tick in any database that has no run of it. So
# before Mage starts, scripts/mage_triggers.py before-start holds such triggers in this database
# (FIRE_TRIGGERS=1 lets them fire) and prints what each trigger will do, in a box that is printed
# again once the UI answers, below Mage's start-up lines. triggers.yaml is not touched.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
mage="${1:-$repo/.venv-mage/bin/mage}"
python="$(dirname "$mage")/python"
export MAGE_DATA_DIR="${MAGE_DATA_DIR:-$repo/mage_data}"
port="${MAGE_PORT:-6789}"
fire="${FIRE_TRIGGERS:-0}"
mkdir -p "$MAGE_DATA_DIR"

case "$fire" in
    1) fire_flag=(--fire) ;;
    0 | "") fire_flag=() ;;
    *) echo "error: FIRE_TRIGGERS must be 0 or 1 (got '$fire')" >&2; exit 2 ;;
esac
before_log="$MAGE_DATA_DIR/mage-ui-before-start.log"
if ! box="$("$python" "$repo/scripts/mage_triggers.py" --project "$repo/mage_project" before-start \
        "${fire_flag[@]}" 2>"$before_log")"; then
    cat "$before_log" >&2
    echo "error: could not check the triggers before starting Mage (above); Mage was not started" >&2
    exit 1
fi
echo "$box"

descendants() {  # every process below $1, deepest first
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        descendants "$child"
        echo "$child"
    done
}

"$mage" start "$repo/mage_project" --host 127.0.0.1 --port "$port" &
server=$!
stop() {
    trap - INT TERM EXIT
    local pids
    pids="$(descendants "$server")"
    kill -TERM "$server" 2>/dev/null || true
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    wait "$server" 2>/dev/null || true
}
trap stop INT TERM EXIT

# Once the UI answers, the box again: the last thing on the screen, not lost among Mage's lines.
"$python" - "$port" "$server" <<'PY' || true
import os, sys, time, urllib.request
port, server = sys.argv[1], int(sys.argv[2])
while True:
    try:
        os.kill(server, 0)
    except OSError:
        sys.exit(1)  # Mage exited: its own lines say why
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as answer:
            if answer.status == 200:
                break
    except Exception:  # not up yet
        pass
    time.sleep(1)
PY
echo "$box"
echo "Mage UI: http://127.0.0.1:$port (project $repo/mage_project, MAGE_DATA_DIR $MAGE_DATA_DIR); Ctrl-C stops it"
wait "$server"
