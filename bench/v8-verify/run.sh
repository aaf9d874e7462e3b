#!/usr/bin/env bash
# The cold path's token verification timed inside V8 (Node), for the default 32-bit
# serial field backend and the fiat backend the filter is built with (.cargo/config.toml).
#
#   bench/v8-verify/run.sh          # needs node (Debian: apt-get install nodejs)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=$(dirname "$HERE")
command -v node >/dev/null || { echo "error: node not found (apt-get install nodejs)" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -q wasm32-wasip1 || rustup target add wasm32-wasip1
OUT=$BENCH/.work/v8-verify
mkdir -p "$OUT"
for backend in serial fiat; do
    echo "==> building bench-v8-verify (curve25519_dalek_backend=$backend)" >&2
    (cd "$BENCH" && CARGO_TARGET_DIR=$BENCH/target/v8-$backend \
        RUSTFLAGS="--cfg curve25519_dalek_backend=\"$backend\"" \
        cargo build -q --release -j1 --target wasm32-wasip1 -p bench-v8-verify)
    cp "$BENCH/target/v8-$backend/wasm32-wasip1/release/bench_v8_verify.wasm" "$OUT/$backend.wasm"
done
echo "==> timing in V8 (node --no-liftoff: TurboFan, as Envoy's V8 runs hot code)" >&2
node --no-liftoff "$HERE/run.js" "serial=$OUT/serial.wasm" "fiat=$OUT/fiat.wasm" "$@"
