#!/usr/bin/env bash
# Runs every test of the project, installing what it needs first; works on a
# fresh machine with a Rust toolchain (rustup), python3 (with venv), Node.js
# >= 18 with npm, and access to crates.io, PyPI and the npm registry.
#
#   bash tests/run-all.sh                 # everything
#   bash tests/run-all.sh -- --nocapture  # extra arguments go to `cargo test`
#
# Steps:
#   1. adds the rustup target wasm32-wasip2 if it is missing;
#   2. plugins/build.sh     builds the Rust example plugins (release, wasm32-wasip2);
#   3. plugins/polyglot.sh  installs componentize-py (plugins/python/.venv) and
#                           componentize-js (plugins/js/node_modules) if needed and
#                           builds the Python and JavaScript plugins (target/polyglot/);
#   4. installs Debian's `prometheus` package (for `promtool check metrics`,
#      which tests/tests/metrics.rs runs) if promtool is missing;
#   5. cargo test --workspace  (unit tests, doctests, end-to-end tests of the
#                           library and of callop-host, Rust and Python/JS plugins).
#
# Fails at the first step that fails (a missing toolchain is an error, never
# a skipped test). Compiled plugins are cached in <target>/callop-test-cache,
# so later runs are much faster than the first.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "run-all.sh: error: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

command -v cargo >/dev/null || die "cargo not found (install Rust with rustup: https://rustup.rs)"
command -v rustup >/dev/null || die "rustup not found: it is needed to add the wasm32-wasip2 target"

TARGET=wasm32-wasip2
if ! rustup target list --installed | grep -qx "$TARGET"; then
    step "rustup target add $TARGET"
    rustup target add "$TARGET" || die "cannot add the rust target $TARGET"
fi

step "plugins/build.sh (Rust plugins)"
bash plugins/build.sh

step "plugins/polyglot.sh (Python and JavaScript plugins)"
bash plugins/polyglot.sh

if ! command -v promtool >/dev/null; then
    step "apt-get install prometheus (promtool, for tests/tests/metrics.rs)"
    command -v apt-get >/dev/null || die "promtool not found and no apt-get: install Prometheus' promtool"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        || die "cannot install the prometheus package (promtool)"
fi

step "cargo test --workspace $*"
cargo test --workspace "$@"
