#!/usr/bin/env bash
# make mage-ui: the Mage UI (and its scheduler) on http://127.0.0.1:6789 with mage_project loaded.
# Usage: scripts/mage_ui.sh [MAGE_BIN]. MAGE_DATA_DIR defaults to <repo>/mage_data (the same
# database and secrets the headless scripts use). Ctrl-C stops Mage *and* the children it would
# otherwise orphan (mage-ai 0.9.80 leaves its scheduler and multiprocessing manager running when
# only the server is killed). Mage 0.9.80 requires a login: admin@admin.com / admin on a new
# database unless DEFAULT_OWNER_EMAIL / DEFAULT_OWNER_PASSWORD are set.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
mage="${1:-$repo/.venv-mage/bin/mage}"
export MAGE_DATA_DIR="${MAGE_DATA_DIR:-$repo/mage_data}"
port="${MAGE_PORT:-6789}"
mkdir -p "$MAGE_DATA_DIR"

descendants() {  # every process below $1, deepest first
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        descendants "$child"
        echo "$child"
    done
}

# An active @once trigger whose start_time has passed fires as soon as Mage's scheduler starts
# on a database that has no run of it yet (a new MAGE_DATA_DIR): say so before starting.
active="$(grep -l '^  status: active' "$repo"/mage_project/pipelines/*/triggers.yaml 2>/dev/null || true)"
if [ -n "$active" ]; then
    echo "note: active trigger(s) in: $(echo $active | sed "s#$repo/##g")"
    echo "      an @once trigger whose start_time has passed fires on the first scheduler tick if this"
    echo "      MAGE_DATA_DIR has no run of it yet (set MAGE_DATA_DIR to the database that ran it)."
fi

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
echo "Mage UI: http://127.0.0.1:$port (project $repo/mage_project, MAGE_DATA_DIR $MAGE_DATA_DIR); Ctrl-C stops it"
wait "$server"
