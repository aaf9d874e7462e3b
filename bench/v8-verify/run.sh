#!/usr/bin/env bash
# The cold path's token verification, and the gate's whole decision, timed inside V8
# (Node), for the default 32-bit serial field backend and the fiat backend the filter is
# built with (.cargo/config.toml).
#
#   bench/v8-verify/run.sh                      # needs node (Debian: apt-get install nodejs)
#   BASELINE_REF=<commit> bench/v8-verify/run.sh
#       # fiat only: this tree beside the rule set and filter of <commit>, in one V8 (the
#       # harness is this tree's in both, so the baseline gets today's measurements)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")
command -v node >/dev/null || { echo "error: node not found (apt-get install nodejs)" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -q wasm32-wasip1 || rustup target add wasm32-wasip1
OUT=$BENCH/.work/v8-verify
mkdir -p "$OUT"

build() { # bench-dir target-name backend out.wasm
    echo "==> building bench-v8-verify in $1 (curve25519_dalek_backend=$3)" >&2
    (cd "$1" && CARGO_TARGET_DIR=$BENCH/target/$2 RUSTFLAGS="--cfg curve25519_dalek_backend=\"$3\"" \
        cargo build -q --release -j1 --target wasm32-wasip1 -p bench-v8-verify)
    cp "$BENCH/target/$2/wasm32-wasip1/release/bench_v8_verify.wasm" "$4"
}

if [ -n "${BASELINE_REF:-}" ]; then
    # Outside the repository, so that cargo reads the baseline's own .cargo/config.toml.
    BASE=$(mktemp -d /tmp/tokengate-v8-baseline.XXXXXX)
    trap 'git -C "$ROOT" worktree remove --force "$BASE/src" 2>/dev/null || true; rm -rf "$BASE"' EXIT
    git -C "$ROOT" worktree add -q --detach "$BASE/src" "$BASELINE_REF"
    rm -rf "$BASE/src/bench/v8-verify"
    cp -r "$HERE" "$BASE/src/bench/v8-verify"
    grep -q '"v8-verify"' "$BASE/src/bench/Cargo.toml" ||
        sed -i 's/^members = \[\(.*\)\]/members = [\1, "v8-verify"]/' "$BASE/src/bench/Cargo.toml"
    build "$BASE/src/bench" v8-baseline fiat "$OUT/baseline.wasm"
    build "$BENCH" v8-fiat fiat "$OUT/fiat.wasm"
    echo "==> timing in V8 (node --no-liftoff: TurboFan, as Envoy's V8 runs hot code)" >&2
    node --no-liftoff "$HERE/run.js" "$BASELINE_REF=$OUT/baseline.wasm" "now=$OUT/fiat.wasm" "$@"
    exit 0
fi
for backend in serial fiat; do
    build "$BENCH" "v8-$backend" "$backend" "$OUT/$backend.wasm"
done
echo "==> timing in V8 (node --no-liftoff: TurboFan, as Envoy's V8 runs hot code)" >&2
node --no-liftoff "$HERE/run.js" "serial=$OUT/serial.wasm" "fiat=$OUT/fiat.wasm" "$@"
