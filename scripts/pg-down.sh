#!/usr/bin/env bash
# pg-down.sh: stop and remove exactly what scripts/pg-up.sh started, nothing else.
#   * throwaway cluster: pg_ctl stop (fast, then immediate), kill the recorded postmaster pid
#     only if it is still that cluster's postmaster, then delete its /tmp directory;
#   * Debian cluster: drop the roles/database pg-up created, and stop the cluster only if pg-up
#     was the one that started it;
#   * a server that already answered when pg-up ran (no state file): nothing to do.
# Idempotent: with no state file it says so and exits 0.
# Leases: the server is left running while another live process group holds a pg-up lease (a
# concurrent `make test`); our own process group's lease is released. --force stops it anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE_DIR="${QBO_PG_STATE_DIR:-$ROOT/target/pg}"
STATE="$STATE_DIR/state"
say() { echo "pg-down: $*" >&2; }

locked=no; force=no
for arg in "$@"; do
    case "$arg" in
    --locked) locked=yes ;;  # called by pg-up.sh, which holds the lock
    --force) force=yes ;;
    *) say "unknown argument $arg (use --force to ignore other users' leases)"; exit 2 ;;
    esac
done
if [ "$locked" = no ]; then
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/lock"
    flock 9
fi

if [ ! -f "$STATE" ]; then
    say "nothing to stop (pg-up started no server)"
    rm -f "$STATE_DIR/dsn"
    exit 0
fi
get() { sed -n "s/^$1=//p" "$STATE" | head -1; }

# Release our lease; keep the server if someone else's process group is still using it.
me="$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ')"
others=""
if [ -d "$STATE_DIR/leases" ]; then
    for lease in "$STATE_DIR/leases"/*; do
        [ -e "$lease" ] || continue
        pgid="$(basename "$lease")"
        if [ "$pgid" = "$me" ] || ! kill -0 -- "-$pgid" 2>/dev/null; then
            rm -f "$lease"
        else
            others="$others $pgid"
        fi
    done
fi
if [ -n "$others" ] && [ "$force" = no ] && [ "$locked" = no ]; then
    say "server left running: still in use by process group(s)$others (pg-down.sh --force stops it anyway)"
    exit 0
fi
mode="$(get mode)"

case "$mode" in
throwaway)
    dir="$(get dir)"; pid="$(get pid)"; pg_ctl="$(get pg_ctl)"
    case "$dir" in /tmp/qbo_pg.*) ;; *) say "refusing to touch unexpected directory '$dir'"; exit 1 ;; esac
    if [ -d "$dir/data" ]; then
        (cd /tmp && runuser -u postgres -- "$pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >&2) ||
            (cd /tmp && runuser -u postgres -- "$pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >&2) || true
    fi
    # Last resort: the recorded pid, but only while it is still a postgres process of that cluster.
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/data"; then
        say "postmaster $pid still running: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -rf "$dir"
    say "throwaway cluster stopped and $dir removed"
    ;;
debian)
    read -r ver name <<<"$(get cluster)"
    port="$(get port)"; created="$(get created)"; started="$(get started)"
    psql_pg() { (cd /tmp && runuser -u postgres -- psql -XAtq -h /var/run/postgresql -p "$port" -d postgres -c "$1") >&2; }
    if pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $4}' | grep -qx online; then
        for item in $created; do
            case "$item" in
            db:*) psql_pg "drop database if exists ${item#db:} with (force)" || true ;;
            esac
        done
        for item in $created; do
            case "$item" in
            role:*) psql_pg "drop role if exists ${item#role:}" || true ;;
            esac
        done
        if [ "$started" = "yes" ]; then
            pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop >&2 || true
            say "Debian cluster $ver/$name stopped"
        fi
    fi
    ;;
*)
    say "unknown state mode '$mode' in $STATE: leaving everything alone"
    ;;
esac
rm -f "$STATE" "$STATE_DIR/dsn"
rm -rf "$STATE_DIR/leases"
