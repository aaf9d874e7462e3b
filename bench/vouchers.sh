#!/usr/bin/env bash
# Seed-000 voucher redemptions per second and their latency, and the voucher PDF (issue
# 12 §6): POST /api/v1/vouchers/redeem at 1 and 16 concurrent clients, on SQLite and,
# when DATABASE_URL=postgres://..., on PostgreSQL too. A benchmark, not a CI test.
#
#   bench/vouchers.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bench/vouchers.sh
#
# Knobs: COUNT1 redemptions at 1 client (200), COUNT16 at 16 clients (1600), PDF_CALLS
# timed calls of the PDF (5).
# It builds the control plane (release) and tg-bench, starts the control plane on a free
# port (SQLite and its data directory in a temporary directory; PostgreSQL in a fresh
# database it drops after), and per backend:
# - generates 200 single-use 7-day vouchers and times GET /api/v1/vouchers/pdf (checks
#   %PDF and, with pdfinfo, the page count), then deletes them;
# - generates 200 multi-use unlimited vouchers and redeems them (tg-bench redeem), each
#   client from its own source address (x-forwarded-for, trusted from loopback):
#     new device      each redemption a device never seen: a new activation row;
#     new device, one code   the same, every device on one code (its activations pile up);
#     renewal         each client's device redeems its code again: no new row.
# Every answer must be 200 (the first that is not stops the script, with its body).
# Prints markdown table rows. Every process it started is stopped on exit.
set -euo pipefail

COUNT1=${COUNT1:-200}
COUNT16=${COUNT16:-1600}
PDF_CALLS=${PDF_CALLS:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$(mktemp -d)
CP_PID=''
PG_DB=''
log() { printf '==> [vouchers] %s\n' "$*" >&2; }
die() {
    printf 'error: [vouchers] %s\n' "$*" >&2
    exit 1
}
cleanup() {
    [ -z "$CP_PID" ] || kill "$CP_PID" 2>/dev/null || true
    [ -z "$CP_PID" ] || wait "$CP_PID" 2>/dev/null || true
    if [ -n "$PG_DB" ]; then psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cmd="bench/vouchers.sh"
[ -z "${DATABASE_URL:-}" ] || cmd="DATABASE_URL=$DATABASE_URL $cmd"
[ "$COUNT1" = 200 ] || cmd="COUNT1=$COUNT1 $cmd"
[ "$COUNT16" = 1600 ] || cmd="COUNT16=$COUNT16 $cmd"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

log "building the control plane (release) and tg-bench"
(cd "$ROOT" && cargo build -q --release -p tokengate-control-plane)
(cd "$BENCH" && cargo build -q --release -p tg-bench)
TG=$BENCH/target/release/tg-bench
CP_BIN=$ROOT/target/release/tokengate
ADMIN_PASSWORD=bench-admin-password-$RANDOM$RANDOM
NETWORK=bench-wifi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_cp() { # $1 database URL, $2 data directory
    local port
    port=$(free_port)
    CP_ADDR=127.0.0.1:$port
    mkdir -p "$2"
    DATABASE_URL=$1 TOKENGATE_LISTEN=$CP_ADDR TOKENGATE_ADMIN_USER=admin TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD \
        TOKENGATE_PROXY_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n') TOKENGATE_DATA_DIR=$2 RUST_LOG=warn \
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

# api METHOD PATH [BODY]: the answer's body on stdout; dies unless the status is 2xx.
api() {
    local status data=()
    [ $# -lt 3 ] || data=(-H 'content-type: application/json' --data "$3")
    status=$(curl -s -o "$WORK/answer" -w '%{http_code}' -X "$1" "http://$CP_ADDR$2" -H "authorization: Bearer $ADMIN" "${data[@]}") ||
        die "$1 $2: curl failed"
    case $status in
        2??) cat "$WORK/answer" ;;
        *) die "$1 $2 answered $status: $(cat "$WORK/answer")" ;;
    esac
}

# generate KIND DAYS FILE: 200 vouchers; their ids and codes, "id code" a line, in FILE.
generate() {
    api POST /api/v1/vouchers "{\"count\":200,\"kind\":\"$1\",\"days\":$2}" |
        python3 -c 'import json,sys; v=json.load(sys.stdin)["vouchers"]; assert len(v)==200, len(v); print("\n".join(x["id"]+" "+x["code"] for x in v))' >"$3"
}

pdf() { # $1 backend
    log "$1: the PDF of 200 single-use 7-day vouchers ($PDF_CALLS calls)"
    generate single 7 "$WORK/single"
    local times=() out status t size pages
    for _ in $(seq 1 "$PDF_CALLS"); do
        out=$(curl -s -o "$WORK/sheet.pdf" -w '%{http_code} %{time_total} %{size_download}' "http://$CP_ADDR/api/v1/vouchers/pdf" \
            -H "authorization: Bearer $ADMIN") || die "GET /api/v1/vouchers/pdf: curl failed"
        read -r status t size <<<"$out"
        [ "$status" = 200 ] || die "GET /api/v1/vouchers/pdf answered $status: $(head -c 2000 "$WORK/sheet.pdf")"
        [ "$(head -c 5 "$WORK/sheet.pdf")" = "%PDF-" ] || die "GET /api/v1/vouchers/pdf: not a PDF: $(head -c 200 "$WORK/sheet.pdf")"
        times+=("$t")
    done
    pages='n/a (no pdfinfo)'
    if command -v pdfinfo >/dev/null; then
        pages=$(pdfinfo "$WORK/sheet.pdf" | awk '/^Pages:/ {print $2}')
        [ -n "$pages" ] || die "pdfinfo cannot read the PDF"
    fi
    python3 -c 'import statistics,sys; t=sorted(float(x)*1000 for x in sys.argv[4:]); print("| %s | 200 | %d | %.0f | %.0f | %.0f | %s | %s |" % (sys.argv[1], len(t), t[0], statistics.median(t), t[-1], sys.argv[2], sys.argv[3]))' \
        "$1" "$size" "$pages" "${times[@]}" >>"$WORK/pdf.md"
    # Back to none unused, for the multi-use ones (at most 200 unused per account).
    while read -r id _; do api DELETE "/api/v1/vouchers/$id" >/dev/null; done <"$WORK/single"
}

redeem() { # $1 backend, $2 case, $3 clients, $4 count, $5 mode, $6 run, $7 codes file
    log "$1: $4 redemptions ($2) at $3 client(s)"
    local out
    if ! out=$("$TG" redeem --cp "$CP_ADDR" --codes "$7" --network "$NETWORK" --count "$4" --concurrency "$3" --mode "$5" --run "$6" 2>"$WORK/tg.err"); then
        cat "$WORK/tg.err" >&2
        grep -iE 'error|panic' "$WORK/cp.log" | tail -5 >&2 || true
        die "$1: $2 at $3 client(s): a redemption failed (above)"
    fi
    python3 -c 'import json,sys; r=json.loads(sys.argv[3]); print("| %s | %s | %d | %d | %.1f | %.1f | %.1f |" % (sys.argv[1], sys.argv[2], r["concurrency"], r["count"], r["per_sec"], r["p50_ms"], r["p99_ms"]))' "$1" "$2" "$out"
}

run_backend() { # $1 name, $2 database URL, $3 data directory
    start_cp "$2" "$3"
    ADMIN=$("$TG" login --cp "$CP_ADDR" --user admin --password "$ADMIN_PASSWORD" | cut -d' ' -f2)
    api POST /api/v1/networks "{\"id\":\"$NETWORK\",\"name\":\"Bench\"}" >/dev/null
    pdf "$1"
    generate multi null "$WORK/multi"
    cut -d' ' -f2 "$WORK/multi" >"$WORK/codes"
    head -n1 "$WORK/codes" >"$WORK/one-code"
    redeem "$1" "new device" 1 "$COUNT1" new 1 "$WORK/codes"
    redeem "$1" "new device" 16 "$COUNT16" new 2 "$WORK/codes"
    redeem "$1" "renewal" 16 "$COUNT16" renew 3 "$WORK/codes"
    redeem "$1" "new device, one code" 16 "$COUNT16" new 4 "$WORK/one-code"
    if grep -qiE '\b(error|panic)' "$WORK/cp.log"; then
        grep -iE '\b(error|panic)' "$WORK/cp.log" | tail -5 >&2
        log "$1: the control plane logged errors (above)"
    fi
    stop_cp
}

echo "$cmd — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- control-plane rules || echo ' (control plane modified)'), $(nproc) cores, load $load_before before the build"
echo
echo "| backend | case | clients | redemptions | per s | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|"
: >"$WORK/pdf.md"
run_backend SQLite "sqlite://$WORK/tokengate.db" "$WORK/data-sqlite"
case ${DATABASE_URL:-} in
    postgres://* | postgresql://*)
        PG_DB=tg_vouchers_$RANDOM$RANDOM
        base=${DATABASE_URL%%\?*}
        PG_ADMIN_URL=${base%/*}/postgres
        psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null || die "cannot create a database with $PG_ADMIN_URL"
        run_backend PostgreSQL "${base%/*}/$PG_DB" "$WORK/data-pg"
        ;;
esac
echo
echo "| backend | vouchers | calls | min ms | median ms | max ms | bytes | pages |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
cat "$WORK/pdf.md"
