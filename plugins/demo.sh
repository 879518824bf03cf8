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

bash plugins/build.sh >/dev/null
cargo build --release -p callop-host
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
