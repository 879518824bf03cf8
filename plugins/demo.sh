#!/usr/bin/env bash
# The demo: builds the example plugins and the host, then runs four plugins in one
# `callop-host`: a ticker, an idle worker, and two instances of ping-pong exchanging messages
# through host channels. It exits when no plugin has a source left.
#
#   bash plugins/demo.sh
#
# Installs the wasm32-wasip2 rustup target if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Say up front what takes long: a first run builds wasmtime and cranelift in release mode
# (several minutes on a fast machine, 20 minutes and more on a loaded 2-core one); later runs
# take seconds. Cargo's own progress stays visible (its progress bar on a terminal,
# `Compiling ...` lines otherwise).
echo "demo: the first run builds the plugins and callop-host with wasmtime in release mode;" >&2
echo "demo: that takes minutes (20+ on a slow or busy machine), later runs take seconds." >&2
echo "demo: [1/3] building the example plugins (wasm32-wasip2)..." >&2
bash plugins/build.sh >/dev/null
echo "demo: [2/3] building callop-host (release; wasmtime is the long part)..." >&2
start=$SECONDS
cargo build --release -p callop-host
echo "demo: callop-host built in $((SECONDS - start)) s" >&2
echo "demo: [3/3] running four plugins in one callop-host" >&2
wasm="$(cd plugins && cargo metadata --format-version 1 --no-deps \
      | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/wasm32-wasip2/release"
host="$(cargo metadata --format-version 1 --no-deps \
      | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/callop-host"

set -x
"$host" \
    "$wasm/ticker.wasm=--every,100ms,--count,5" \
    "$wasm/idle_worker.wasm=--n,1000000,--chunk,100000" \
    "$wasm/ping_pong.wasm@ping=--role,ping,--count,1000" \
    "$wasm/ping_pong.wasm@pong=--role,pong"
