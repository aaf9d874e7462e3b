#!/usr/bin/env bash
# Fan-out benchmark (issue 14, target 8): how the control plane's cost grows with the
# number of proxies. `tg-bench fanout` (bench/tool/src/fanout.rs) plays N proxies speaking
# the real sync protocol (snapshot, then held long polls with the ProxyKeys bearer, every
# answer's MAC checked, each delta applied and confirmed by the next call's `since`),
# while a writer revokes tokens at RATE/s with DELETE /api/v1/tokens/:id.
#
#   bench/fanout.sh                                        # SQLite, 0, 10, 100 and 1000 proxies
#   PROXIES="10 100" RATE=500 SECS=20 bench/fanout.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bench/fanout.sh
#                      # also PostgreSQL: two control planes on one fresh database, the
#                      # proxies split between them, the revocations sent to the first
#
# Knobs (environment): PROXIES ("0 10 100 1000"; 0 is the writer alone, the baseline
# the fan-out cost is measured against), RATE revocations/s (500), SECS of writing
# (20), WRITERS keep-alive DELETE connections (16; WRITERS_PG=48 on PostgreSQL, where a
# commit waits for the server's WAL flush, so 16 connections alone cap the rate), IDLE_SECS (3), DRAIN_SECS (15),
# DATABASE_URL (unset: SQLite only; set: a server to create fresh databases on),
# SQLITE=0 (skip SQLite), CP_BIN (a control-plane binary to run instead of building this
# tree's, e.g. a baseline's copied aside). The table is printed, not written into BENCHMARKS.md.
#
# Every control plane is a fresh release build copied under its own name (tgfan-cp) and
# started on a fresh database per case; every process this script starts is stopped on
# exit (trap). Raw data: bench/.work/fanout-<ts>/ (one JSON line per case in results.jsonl).
set -euo pipefail

PROXIES=${PROXIES:-"0 10 100 1000"}
RATE=${RATE:-500}
SECS=${SECS:-20}
WRITERS=${WRITERS:-16}
WRITERS_PG=${WRITERS_PG:-48}
IDLE_SECS=${IDLE_SECS:-3}
DRAIN_SECS=${DRAIN_SECS:-15}
SQLITE=${SQLITE:-1}
TARGET_P99_MS=100
ADMIN_USER=admin
ADMIN_PASSWORD=bench-admin-password-$RANDOM$RANDOM
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$BENCH/.work/fanout-$STAMP
mkdir -p "$WORK"
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
COMMAND="PROXIES=\"$PROXIES\" RATE=$RATE SECS=$SECS${DATABASE_URL:+ DATABASE_URL=<server>} bench/fanout.sh"

log() { printf '[fanout %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
DBDIRS=()
PGDBS=()
stop_all() {
    local p n
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        for n in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    local d
    stop_all
    for d in "${DBDIRS[@]}"; do rm -rf "$d"; done
    for d in "${PGDBS[@]}"; do psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_code() { # code timeout_s pid url
    local want=$1 deadline=$((SECONDS + $2)) pid=$3
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$4" 2>/dev/null)" = "$want" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------- 1. limits and builds
MAXN=0
for n in $PROXIES; do [ "$n" -gt "$MAXN" ] && MAXN=$n; done
NEED=$((MAXN + 512))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED" ]; then
    HARD=$(ulimit -Hn)
    if [ "$HARD" = unlimited ] || [ "$HARD" -ge "$NEED" ]; then
        ulimit -n "$NEED"
    else
        ulimit -n "$HARD"
        log "warning: open files limited to $HARD (hard limit); $MAXN proxies need about $NEED"
    fi
fi
log "open files limit: $(ulimit -n) (each side holds one connection per proxy)"

if [ -n "${CP_BIN:-}" ]; then
    [ -x "$CP_BIN" ] || die "CP_BIN=$CP_BIN is not an executable control plane"
    log "control plane: $CP_BIN (CP_BIN, not built); building tg-bench (bench/ workspace), -j1"
else
    log "building the control plane (root workspace) and tg-bench (bench/ workspace), -j1"
    (cd "$ROOT" && cargo build -q --release -j1 -p tokengate-control-plane)
    CP_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/tokengate
fi
(cd "$BENCH" && env -u CARGO_TARGET_DIR cargo build -q --release -j1 -p tg-bench)
TG=$BENCH/target/release/tg-bench
# Its own process name: other tooling on a shared machine may stop `tokengate` by name.
cp "$CP_BIN" "$WORK/tgfan-cp"

# ---------------------------------------------------------------- 2. one case
start_cp() { # url port log -> pid in CP_PID
    TOKENGATE_LISTEN=127.0.0.1:$2 DATABASE_URL=$1 TOKENGATE_ADMIN_USER=$ADMIN_USER \
        TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD TOKENGATE_PROXY_SECRET=$SECRET RUST_LOG=warn \
        "$WORK/tgfan-cp" >"$3" 2>&1 </dev/null &
    CP_PID=$!
    PIDS+=("$CP_PID")
    wait_code 200 60 "$CP_PID" "http://127.0.0.1:$2/healthz" || die "the control plane did not start (see $3)"
}

run_case() { # backend n
    local backend=$1 n=$2 url addrs pids write port name
    local tag=$backend-$n dbuid=
    if [ "$backend" = sqlite ]; then
        local dir
        dir=$(mktemp -d /tmp/tgfan-db.XXXXXX)
        DBDIRS+=("$dir")
        url="sqlite://$dir/tokengate.db"
        port=$(free_port)
        start_cp "$url" "$port" "$WORK/cp-$tag.log"
        addrs=127.0.0.1:$port
        pids=$CP_PID
    else
        name=tgfan_$(date +%s)_$n
        psql -q "$DATABASE_URL" -c "CREATE DATABASE $name" >/dev/null || die "cannot create database $name"
        PGDBS+=("$name")
        url="${DATABASE_URL%/*}/$name"
        port=$(free_port)
        start_cp "$url" "$port" "$WORK/cp-$tag-a.log" # migrates first
        addrs=127.0.0.1:$port
        pids=$CP_PID
        port=$(free_port)
        start_cp "$url" "$port" "$WORK/cp-$tag-b.log"
        addrs=$addrs,127.0.0.1:$port
        pids=$pids,$CP_PID
        # The server's CPU too, when it runs here under its own user (all its processes).
        dbuid=$(ps -o uid= -C postgres 2>/dev/null | head -1 | tr -d ' ' || true)
    fi
    write=${addrs%%,*}
    local writers=$WRITERS
    [ "$backend" = postgres ] && writers=$WRITERS_PG
    log "[$tag] control plane(s) $addrs (pids $pids)"
    local admin
    read -r _ admin <<<"$("$TG" login --cp "$write" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "2 days")"
    [ -n "$admin" ] || die "no admin token"
    local total=$(( RATE * SECS ))
    log "[$tag] issuing $total tokens"
    "$TG" issue --cp "$write" --token "$admin" --count "$total" --concurrency 4 --expires "1 day" \
        --out "$WORK/tokens-$tag.txt" --ids "$WORK/ids-$tag.txt" >"$WORK/issue-$tag.json"
    log "[$tag] $(cat "$WORK/issue-$tag.json")"
    log "[$tag] $n proxies, $RATE revocations/s for $SECS s"
    local out
    out=$("$TG" fanout --cp "$addrs" --write-cp "$write" --token "$admin" --secret "$SECRET" --proxies "$n" \
        --ids "$WORK/ids-$tag.txt" --rate "$RATE" --secs "$SECS" --writers "$writers" --cp-pids "$pids" \
        --idle-secs "$IDLE_SECS" --drain-secs "$DRAIN_SECS" ${dbuid:+--db-uid "$dbuid"} 2> >(tee -a "$WORK/fanout-$tag.log" >&2)) ||
        die "tg-bench fanout failed for $tag"
    # Change-log reads for sync answers, summed over the control planes (each shares one
    # read per version and `since` among the proxies it holds).
    local reads=0 a r
    for a in ${addrs//,/ }; do
        r=$(curl -sf "http://$a/metrics" | awk '$1 == "tokengate_sync_change_reads_total" {print $2}')
        reads=$(( reads + ${r:-0} ))
    done
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["backend"]=sys.argv[2]; d["change_reads"]=int(sys.argv[3]); print(json.dumps(d))' "$out" "$backend" "$reads" >>"$RESULTS"
    log "[$tag] $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); p=d["propagation_ms"]; print("rate %.0f/s, propagation p50 %s p99 %s ms, last proxy p99 %s ms, CP CPU %.0f%% (%.0f us/revocation), RSS %.0f MiB" % (d["achieved_rate"], p["p50"], p["p99"], d["last_proxy_ms"]["p99"], d["cp_cpu_pct"], d["cp_cpu_us_per_revocation"], d["cp_rss_mib"]))' "$out")"
    stop_all
}

[ "$SQLITE" = 1 ] && for n in $PROXIES; do run_case sqlite "$n"; done
if [ -n "${DATABASE_URL:-}" ]; then
    command -v psql >/dev/null || die "DATABASE_URL is set but psql is missing"
    for n in $PROXIES; do run_case postgres "$n"; done
fi

# ---------------------------------------------------------------- 3. report
python3 - "$RESULTS" "$TARGET_P99_MS" >"$WORK/table.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
target = float(sys.argv[2])
f = lambda x, d=1: "–" if x is None else ("%%.%df" % d) % x
print("| backend | proxies | revocations/s reached | propagation p50 / p99 / max ms | last proxy p99 ms | missing pairs | CP CPU % of a core (idle with N polls) | CP µs / revocation | CP µs / revocation / proxy | fan-out µs / revocation / proxy (over 0 proxies) | CP RSS MiB (peak) | sync answers / revocation / proxy | revocations / answer | DELETE p50 / p99 ms | tool CPU % | PostgreSQL server CPU % (µs / revocation) | change-log reads / revocation |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
base = {d["backend"]: d["cp_cpu_us_per_revocation"] for d in rows if d["proxies"] == 0}
for d in rows:
    b = base.get(d["backend"])
    extra = "–" if b is None or d["proxies"] == 0 else "%.2f" % ((d["cp_cpu_us_per_revocation"] - b) / d["proxies"])
    p = d["propagation_ms"]
    print("| %s%s | %d | %.0f | %s / %s / %s | %s | %d | %.0f (%.1f) | %.0f | %.2f | %s | %.0f (%.0f) | %.3f | %.1f | %s / %s | %.0f | %s | %s |" % (
        d["backend"], " ×2" if d["control_planes"] > 1 else "", d["proxies"], d["achieved_rate"],
        f(p["p50"]), f(p["p99"]), f(p["max"]), f(d["last_proxy_ms"]["p99"]), d["missing_pairs"],
        d["cp_cpu_pct"], d["cp_idle_cpu_pct"], d["cp_cpu_us_per_revocation"], d["cp_cpu_us_per_revocation_per_proxy"], extra,
        d["cp_rss_mib"], d["cp_peak_rss_mib"], d["sync_calls_per_revocation_per_proxy"], d["revocations_per_answer"], f(d["delete_ms"]["p50"]), f(d["delete_ms"]["p99"]), d["tool_cpu_pct"],
        "–" if d.get("db_cpu_pct") is None else "%.0f (%.0f)" % (d["db_cpu_pct"], d["db_cpu_us_per_revocation"] or 0),
        "–" if not d.get("revocations") else "%.2f" % (d.get("change_reads", 0) / d["revocations"])))
print()
for d in rows:
    if d["proxies"] >= 1000:
        p99 = d["propagation_ms"]["p99"]
        met = p99 is not None and p99 <= target and d["missing_pairs"] == 0
        print("%s%s, %d proxies: propagation p99 %s ms against ≤ %.0f ms: **%s**." % (d["backend"], " ×2" if d["control_planes"] > 1 else "", d["proxies"], f(p99), target, "met" if met else "missed"))
for backend in sorted(base):
    per = sorted((d["proxies"], (d["cp_cpu_us_per_revocation"] - base[backend]) / d["proxies"]) for d in rows if d["backend"] == backend and d["proxies"] > 0)
    if len(per) >= 2:
        grows = per[-1][1] > 1.1 * per[0][1]
        print("%s: fan-out CPU per revocation per proxy %s: cost per proxy **%s**." % (backend, " → ".join("%.1f µs (%d)" % (c, n) for n, c in per),
            "grows with the count (missed)" if grows else "does not grow with the count (met)"))
print()
print("Checks: " + "; ".join("%s-%d: %d DELETE failures, %d bad MACs, %d versions backwards, %d errors, %d snapshots" % (
    d["backend"], d["proxies"], d["delete_failures"], d["bad_mac"], d["backwards"], d["errors"], d["snapshots"]) for d in rows) + ".")
EOF
echo
cat "$WORK/table.md"
log "raw data in $WORK"
