#!/usr/bin/env bash
# Builds the callop guest SDK and every example plugin as wasm components
# (release profile: opt-level 3, LTO, stripped).
#
#   plugins/build.sh            # all plugins
#   plugins/build.sh ticker     # only some (package names)
#
# Installs the wasm32-wasip2 target with rustup if it is missing.
set -euo pipefail
cd "$(dirname "$0")"

TARGET=wasm32-wasip2
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "installing rust target $TARGET" >&2
    rustup target add "$TARGET"
fi

PLUGINS=(ticker idle-worker ping-pong relay selftest echo-server udp-echo line-counter sighup-reload io-probe bench-sink faulty reload-counter kv-plugin)
if [ "$#" -gt 0 ]; then PLUGINS=("$@"); fi

args=()
for p in "${PLUGINS[@]}"; do args+=(-p "$p"); done
cargo build --release --target "$TARGET" "${args[@]}"

out="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
      | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
out="${out:-$PWD/target}/$TARGET/release"
status=0
for p in "${PLUGINS[@]}"; do
    f="$out/${p//-/_}.wasm"
    # A component starts with "\0asm" followed by version 0x0d 0x00 0x01 0x00
    # (a core module would have 0x01 0x00 0x00 0x00).
    if [ -f "$f" ] && [ "$(od -An -tx1 -j4 -N4 "$f" | tr -d ' \n')" = "0d000100" ]; then
        printf '%-12s %s (%s bytes)\n' "$p" "$f" "$(wc -c <"$f")"
    else
        echo "$p: missing or not a component: $f" >&2
        status=1
    fi
done
exit "$status"
