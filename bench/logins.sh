#!/usr/bin/env bash
# Seed-002 logins per second and their latency (issue 11 §7): password, PIN and token
# logins (POST /api/v1/login) at 1 and 16 concurrent clients, on SQLite and, when
# DATABASE_URL=postgres://..., on PostgreSQL too. A benchmark, not a CI test.
#
#   bench/logins.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bench/logins.sh
#
# Knobs: COUNT1 logins at 1 client (40), COUNT16 logins at 16 clients (320).
# It builds the control plane (release) and tg-bench, starts the control plane on a free
# port (SQLite in a temporary directory; PostgreSQL in a fresh database it drops after),
# makes a user with a password and a PIN, and prints one markdown table row per run.
# Every process it started is stopped on exit.
set -euo pipefail

COUNT1=${COUNT1:-40}
COUNT16=${COUNT16:-320}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$(mktemp -d)
CP_PID=''
PG_DB=''
log() { printf '==> [logins] %s\n' "$*" >&2; }
die() {
    printf 'error: [logins] %s\n' "$*" >&2
    exit 1
}
cleanup() {
    [ -z "$CP_PID" ] || kill "$CP_PID" 2>/dev/null || true
    [ -z "$CP_PID" ] || wait "$CP_PID" 2>/dev/null || true
    if [ -n "$PG_DB" ]; then psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log "building the control plane (release) and tg-bench"
(cd "$ROOT" && cargo build -q --release -p tokengate-control-plane)
(cd "$BENCH" && cargo build -q --release -p tg-bench)
TG=$BENCH/target/release/tg-bench
CP_BIN=$ROOT/target/release/tokengate
ADMIN_PASSWORD=bench-admin-password-$RANDOM$RANDOM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_cp() { # $1 database URL
    local port
    port=$(free_port)
    CP_ADDR=127.0.0.1:$port
    DATABASE_URL=$1 TOKENGATE_LISTEN=$CP_ADDR TOKENGATE_ADMIN_USER=admin TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD \
        TOKENGATE_PROXY_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n') RUST_LOG=warn \
        "$CP_BIN" >"$WORK/cp.log" 2>&1 &
    CP_PID=$!
    for _ in $(seq 1 100); do
        curl -fs "http://$CP_ADDR/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$WORK/cp.log" >&2
    die "the control plane did not come up on $CP_ADDR"
}

stop_cp() {
    kill "$CP_PID" 2>/dev/null || true
    wait "$CP_PID" 2>/dev/null || true
    CP_PID=''
}

run_backend() { # $1 name, $2 database URL
    start_cp "$2"
    local admin token
    admin=$("$TG" login --cp "$CP_ADDR" --user admin --password "$ADMIN_PASSWORD" | cut -d' ' -f2)
    curl -fs "http://$CP_ADDR/api/v1/users" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
        -d '{"name":"bench","password":"bench-user-password","pin":"24681357"}' >/dev/null || die "creating the bench user failed"
    token=$("$TG" login --cp "$CP_ADDR" --user bench --password bench-user-password | cut -d' ' -f2)
    for kind in password pin token; do
        case $kind in
            password) cred=bench-user-password ;;
            pin) cred=24681357 ;;
            token) cred=$token ;;
        esac
        for c in 1 16; do
            n=$COUNT1
            [ "$c" = 1 ] || n=$COUNT16
            log "$1: $n $kind logins at $c client(s)"
            out=$("$TG" logins --cp "$CP_ADDR" --user bench --credentials "$cred" --kind "$kind" --count "$n" --concurrency "$c")
            python3 -c 'import json,sys; r=json.loads(sys.argv[2]); print("| %s | %s | %d | %d | %.1f | %.1f | %.1f |" % (sys.argv[1], r["kind"], r["concurrency"], r["count"], r["per_sec"], r["p50_ms"], r["p99_ms"]))' "$1" "$out"
        done
    done
    stop_cp
}

echo "| backend | login | clients | logins | per s | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|"
run_backend SQLite "sqlite://$WORK/tokengate.db"
case ${DATABASE_URL:-} in
    postgres://* | postgresql://*)
        PG_DB=tg_logins_$RANDOM$RANDOM
        base=${DATABASE_URL%%\?*}
        PG_ADMIN_URL=${base%/*}/postgres
        psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null || die "cannot create a database with $PG_ADMIN_URL"
        run_backend PostgreSQL "${base%/*}/$PG_DB"
        ;;
esac
