#!/usr/bin/env bash
# pg-up.sh: make sure a PostgreSQL server for qbo_pg's tests answers, and print its DSN.
#
# Contract (the Makefile relies on it):
#   * The LAST line on stdout is the DSN to export as QBO_RS_TEST_DSN. Everything else
#     (progress, reasons) goes to stderr. The DSN is also written to $STATE_DIR/dsn.
#   * If $QBO_RS_TEST_DSN (default postgresql://qbo_test:qbo_test@127.0.0.1:5432/qbo_test)
#     already answers, nothing is started or changed: we say so and print it.
#   * Otherwise we start a throwaway cluster: initdb (run as the postgres user) into a fresh
#     directory under /tmp, on a free port, listening on 127.0.0.1 only, scram-sha-256 over TCP,
#     TLS on with a self-signed certificate for 127.0.0.1 (data/server.crt) when openssl exists.
#     If initdb is unavailable (or QBO_PG_MODE=debian) we fall back to Debian's cluster (pg_ctlcluster 15 main).
#     Either way we create role qbo_test (password qbo_test) owning database qbo_test, and role
#     qbo_noperm (password qbo_noperm, LOGIN, no privilege on any schema) for privilege tests,
#     and qbo_slots (password qbo_slots, LOGIN, CONNECTION LIMIT 2) for the pool's test of a
#     server with no connection slot left.
#   * Idempotent: a second run finds the server the first one started (state in $STATE_DIR)
#     and just prints its DSN again.
#   * Leases: each run records a lease for its caller's process group ($STATE_DIR/leases/PGID).
#     pg-down.sh leaves the server running while another LIVE process group holds a lease, so
#     two concurrent `make test` runs (or a developer's test loop) never lose the server
#     under them. Leases of exited process groups are ignored.
#   * A server that cannot be started exits 1 when CI=true (a failure, never a skip);
#     elsewhere it prints the reason on stderr, prints NO DSN line, and exits 0 so that the
#     tests skip (they say why).
# pg-down.sh stops and removes exactly what this script started, using $STATE_DIR/state.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE_DIR="${QBO_PG_STATE_DIR:-$ROOT/target/pg}"
DEFAULT_DSN="postgresql://qbo_test:qbo_test@127.0.0.1:5432/qbo_test"
WANT_DSN="${QBO_RS_TEST_DSN:-$DEFAULT_DSN}"
PGBIN="${PGBIN:-}"
MODE="${QBO_PG_MODE:-auto}"  # auto | throwaway | debian (debian: skip initdb, e.g. to test the fallback)
if [ -z "$PGBIN" ]; then
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && PGBIN="$d"; done
fi
say() { echo "pg-up: $*" >&2; }

give_up() {
    say "$*"
    if [ "${CI:-}" = "true" ]; then
        say "CI=true: a database that cannot be started is a failure"
        exit 1
    fi
    say "no PostgreSQL for the tests: the qbo_pg tests that need one will be skipped"
    exit 0
}

find_bin() {  # find_bin NAME -> path or empty
    if [ -n "$PGBIN" ] && [ -x "$PGBIN/$1" ]; then echo "$PGBIN/$1"; return; fi
    command -v "$1" 2>/dev/null || true
}
PSQL="$(find_bin psql)"
[ -n "$PSQL" ] || give_up "psql not found (install the postgresql-client package)"

answers() {  # answers DSN: true if we can log in and run a query
    PGCONNECT_TIMEOUT=3 "$PSQL" "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/lock"
flock 9  # two concurrent pg-up/pg-down runs never race on the state file
# (every server we start gets `9>&-`: a postmaster inheriting fd 9 would hold the lock forever)

take_lease() {  # lease for our process group (the make recipe / shell job that called us)
    local pgid
    pgid="$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ')"
    [ -n "$pgid" ] || return 0
    mkdir -p "$STATE_DIR/leases"
    : >"$STATE_DIR/leases/$pgid"
}

finish() {  # finish DSN: record and print it (last stdout line)
    [ -f "$STATE_DIR/state" ] && take_lease
    printf '%s\n' "$1" >"$STATE_DIR/dsn"
    printf '%s\n' "$1"
    exit 0
}

# 1. Someone else's server (or the one we started earlier) already answers.
if answers "$WANT_DSN"; then
    if [ -f "$STATE_DIR/state" ] && grep -qxF "dsn=$WANT_DSN" "$STATE_DIR/state"; then
        say "the server pg-up started earlier is running ($(grep '^mode=' "$STATE_DIR/state"))"
    else
        say "QBO_RS_TEST_DSN already answers: nothing to start"
    fi
    finish "$WANT_DSN"
fi
if [ -f "$STATE_DIR/state" ]; then
    prev_dsn="$(sed -n 's/^dsn=//p' "$STATE_DIR/state")"
    if [ -n "$prev_dsn" ] && answers "$prev_dsn"; then
        say "the server pg-up started earlier is running"
        finish "$prev_dsn"
    fi
    say "stale state from an earlier run: cleaning it up first"
    "$ROOT/scripts/pg-down.sh" --locked >&2 || true
fi

# Runs SQL as the postgres superuser over the Unix socket (peer auth).
#   as_postgres_sql SOCKET_DIR PORT SQL
as_postgres_sql() {
    (cd /tmp && runuser -u postgres -- "$PSQL" -XAtq -v ON_ERROR_STOP=1 -h "$1" -p "$2" -d postgres -c "$3")
}

# Creates role NAME (LOGIN, password NAME, then ATTRIBUTES), or gives an existing one exactly
# that again. Echoes " role:NAME" when it created it.
ensure_role() {  # ensure_role SOCKET_DIR PORT NAME [ATTRIBUTES]
    local sock="$1" port="$2" role="$3" attrs="${4:-}" verb=alter
    [ "$(as_postgres_sql "$sock" "$port" "select 1 from pg_roles where rolname='$role'")" = "1" ] || verb=create
    as_postgres_sql "$sock" "$port" "$verb role $role login password '$role'$attrs"
    [ "$verb" = alter ] || printf ' role:%s' "$role"
}

# Creates (or re-passwords) the roles and the database. Echoes created=... flags.
provision() {  # provision SOCKET_DIR PORT
    local sock="$1" port="$2" created="" limited=" nosuperuser nocreatedb nocreaterole"
    created="$created$(ensure_role "$sock" "$port" qbo_test)"
    created="$created$(ensure_role "$sock" "$port" qbo_noperm "$limited")"
    created="$created$(ensure_role "$sock" "$port" qbo_slots " connection limit 2$limited")"
    if [ "$(as_postgres_sql "$sock" "$port" "select 1 from pg_database where datname='qbo_test'")" != "1" ]; then
        as_postgres_sql "$sock" "$port" "create database qbo_test owner qbo_test"
        created="$created db:qbo_test"
    fi
    # Since PostgreSQL 15 PUBLIC has no CREATE on schema public; make sure of it on older ones,
    # so qbo_noperm really has no privilege on any schema it could write to.
    (cd /tmp && runuser -u postgres -- "$PSQL" -XAtq -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -d qbo_test \
        -c "revoke create on schema public from public") >/dev/null
    echo "$created"
}

free_port() {
    local p
    for p in $(seq 54329 54429); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && [ ! -e "/tmp/.s.PGSQL.$p" ]; then
            echo "$p"; return 0
        fi
    done
    return 1
}

# 2. Throwaway cluster.
INITDB="$(find_bin initdb)"
PG_CTL="$(find_bin pg_ctl)"
if [ "$MODE" = "throwaway" ] && { [ -z "$INITDB" ] || [ -z "$PG_CTL" ]; }; then
    give_up "QBO_PG_MODE=throwaway but initdb/pg_ctl were not found (set PGBIN)"
fi
if [ "$MODE" != "debian" ] && [ -n "$INITDB" ] && [ -n "$PG_CTL" ] && id postgres >/dev/null 2>&1; then
    dir="$(mktemp -d /tmp/qbo_pg.XXXXXX)"
    chown postgres: "$dir"
    port="$(free_port)" || give_up "no free TCP port in 54329..54429"
    say "initdb into $dir (port $port)"
    if ! (cd /tmp && runuser -u postgres -- "$INITDB" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1); then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        give_up "initdb failed"
    fi
    # TLS: a throwaway CA ($dir/ca.crt) and a server certificate it signed, so the tests
    # exercise sslmode=require and verify-full for real (they find ca.crt next to
    # `SHOW ssl_cert_file`). The certificate names 127.0.0.1 only, not localhost: the tests
    # connect as localhost to see the host-name check fail. Plain TCP still works ("host" lines).
    ssl_opts=""
    if command -v openssl >/dev/null 2>&1 && (
        set -e
        cd "$dir"
        ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=qbo_pg throwaway test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.crt
        openssl req "${ec[@]}" -subj "/CN=localhost" -keyout server.key -out server.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile server.ext -out server.crt
        rm -f ca.key server.csr server.ext ca.srl
        chown postgres: server.key server.crt ca.crt
        chmod 600 server.key
    ) >/dev/null 2>&1; then
        ssl_opts="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    else
        say "could not make a certificate (openssl): the throwaway cluster runs without TLS"
    fi
    if ! (cd /tmp && runuser -u postgres -- "$PG_CTL" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=50 $ssl_opts" start >&2 9>&-); then
        cat "$dir/server.log" >&2 || true
        rm -rf "$dir"
        give_up "the throwaway cluster did not start"
    fi
    pid="$(head -1 "$dir/data/postmaster.pid")"
    dsn="postgresql://qbo_test:qbo_test@127.0.0.1:$port/qbo_test"
    {
        echo "mode=throwaway"
        echo "dir=$dir"
        echo "pid=$pid"
        echo "port=$port"
        echo "pg_ctl=$PG_CTL"
        echo "dsn=$dsn"
    } >"$STATE_DIR/state"
    provision "$dir" "$port" >/dev/null || give_up "could not create the qbo_test roles/database"
    answers "$dsn" || give_up "the throwaway cluster does not accept $dsn"
    say "throwaway cluster up: pid $pid, data $dir/data; stop it with scripts/pg-down.sh"
    finish "$dsn"
fi

# 3. Fallback: Debian's cluster.
command -v pg_ctlcluster >/dev/null 2>&1 || give_up "neither initdb nor pg_ctlcluster is available"
read -r ver name < <(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1, $2}') || true
[ -n "${ver:-}" ] || give_up "initdb unavailable and no Debian cluster exists"
port="$(pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $3}')"
status="$(pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $4}')"
started=no
if [ "$status" != "online" ]; then
    say "starting Debian cluster $ver/$name"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 9>&- || give_up "pg_ctlcluster $ver $name start failed"
    started=yes
fi
sock=/var/run/postgresql
created="$(provision "$sock" "$port")" || give_up "could not create the qbo_test roles/database"
dsn="postgresql://qbo_test:qbo_test@127.0.0.1:$port/qbo_test"
{
    echo "mode=debian"
    echo "cluster=$ver $name"
    echo "started=$started"
    echo "port=$port"
    echo "created=$created"
    echo "dsn=$dsn"
} >"$STATE_DIR/state"
answers "$dsn" || give_up "Debian cluster $ver/$name does not accept $dsn (check pg_hba.conf allows scram/md5 on 127.0.0.1)"
finish "$dsn"
