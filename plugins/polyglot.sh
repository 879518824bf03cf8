#!/usr/bin/env bash
# Builds the callop plugins written in Python and JavaScript as wasm
# components of the WIT world callop:plugin/plugin-with-state@0.3.0 (wit/:
# the plugin world plus the `state` export, whose defaults hand nothing
# over on a reload).
#
#   plugins/polyglot.sh                  # every Python and JS plugin
#   plugins/polyglot.sh python           # only one language
#   plugins/polyglot.sh js/ticker python/relay   # some plugins
#   plugins/polyglot.sh --force ...      # rebuild even if up to date
#
# A plugin is a directory: plugins/python/<name>/app.py or
# plugins/js/<name>/app.js. Output: target/polyglot/<lang>-<name>.wasm
# (the repo's git-ignored target/ dir; override with CALLOP_POLYGLOT_OUT).
#
# A plugin of an application with its own API (see the README, "Giving
# plugins your application's API") has a file WORLD beside its app file:
# one line `<wit-dir> <world>`, the application's WIT directory (relative
# to the repository root; its deps/ holds callop:plugin) and its world that
# includes callop:plugin/plugin, e.g. `tests/kv-app/wit kv-plugin`. The
# application's imports are then importable by the plugin too.
#
# Toolchains are installed project-locally and cached across runs:
#   plugins/python/.venv          componentize-py (PyPI)
#   plugins/js/node_modules       @bytecodealliance/componentize-js (npm)
# Installation is skipped when the pinned version is already there. If a
# toolchain cannot be installed the script fails with a message (it never
# silently skips a language). A plugin is rebuilt only when its sources, the
# helper library, the WIT files or the toolchain changed. Every output is
# checked to be a component; with wasm-tools on PATH, also that it imports
# callop:plugin/host-loop and exports callop:plugin/guest of that version.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
wit="$root/wit"
# The WIT package version the plugins are built for (e.g. 0.3.0).
version="$(sed -n 's/^package callop:plugin@\(.*\);$/\1/p' "$wit"/*.wit)"
out="${CALLOP_POLYGLOT_OUT:-$root/target/polyglot}"
PYTHON="${PYTHON:-python3}"

die() { echo "polyglot.sh: error: $*" >&2; exit 1; }
note() { echo "polyglot.sh: $*" >&2; }

force=0
bare=()   # languages selected as a whole
only=()   # single plugins, <lang>/<name>
for a in "$@"; do
    case "$a" in
        --force) force=1 ;;
        -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
        python|js) bare+=("$a") ;;
        python/*|js/*)
            ext=py; [ "${a%%/*}" = js ] && ext=js
            [ -f "$here/$a/app.$ext" ] || die "no such plugin: $a (expected plugins/$a/app.$ext)"
            only+=("$a") ;;
        *) die "unknown argument '$a' (expected python, js, python/<name>, js/<name>, --force)" ;;
    esac
done
if [ ${#bare[@]} -eq 0 ] && [ ${#only[@]} -eq 0 ]; then bare=(python js); fi
langs=()
for l in python js; do
    case " ${bare[*]} ${only[*]} " in *" $l "*|*" $l/"*) langs+=("$l") ;; esac
done

# ------------------------------------------------------------- toolchains

install_python() {
    local venv="$here/python/.venv"
    local bin="$venv/bin/componentize-py"
    if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null | awk '{print $2}')" = "$COMPONENTIZE_PY_VERSION" ]; then
        return 0
    fi
    note "installing componentize-py==$COMPONENTIZE_PY_VERSION into plugins/python/.venv"
    command -v "$PYTHON" >/dev/null || die "python toolchain: '$PYTHON' not found (set PYTHON=/path/to/python3)"
    if [ ! -x "$venv/bin/pip" ]; then
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv" \
            || die "python toolchain: '$PYTHON -m venv' failed (install the venv module, e.g. apt-get install python3-venv)"
    fi
    "$venv/bin/pip" install --disable-pip-version-check -q "componentize-py==$COMPONENTIZE_PY_VERSION" \
        || die "python toolchain: 'pip install componentize-py==$COMPONENTIZE_PY_VERSION' failed (is PyPI reachable?)"
    [ "$("$bin" --version 2>/dev/null | awk '{print $2}')" = "$COMPONENTIZE_PY_VERSION" ] \
        || die "python toolchain: componentize-py $COMPONENTIZE_PY_VERSION not usable after install"
}

js_version() {
    local pj="$here/js/node_modules/@bytecodealliance/componentize-js/package.json"
    [ -f "$pj" ] && node -p "require('$pj').version" 2>/dev/null || true
}

# componentize-js loads all its runtime dependencies on import (0.23.0 needs
# @bytecodealliance/preview2-shim, which it only declares as a devDependency).
js_importable() {
    (cd "$here/js" && node --input-type=module -e "await import('@bytecodealliance/componentize-js')" >/dev/null 2>&1)
}

install_js() {
    command -v node >/dev/null || die "js toolchain: node not found (Node.js >= 18 is required)"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge 18 ] || die "js toolchain: Node.js >= 18 required, found $(node --version)"
    if [ -x "$here/js/node_modules/.bin/componentize-js" ] && [ "$(js_version)" = "$COMPONENTIZE_JS_VERSION" ] \
        && js_importable; then
        return 0
    fi
    command -v npm >/dev/null || die "js toolchain: npm not found"
    note "installing @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION into plugins/js/node_modules"
    local cmd=install
    [ -f "$here/js/package-lock.json" ] && cmd=ci
    (cd "$here/js" && npm "$cmd" --no-audit --no-fund --loglevel=error) \
        || die "js toolchain: 'npm $cmd' in plugins/js failed (is the npm registry reachable?)"
    [ "$(js_version)" = "$COMPONENTIZE_JS_VERSION" ] \
        || die "js toolchain: componentize-js $COMPONENTIZE_JS_VERSION not found after npm $cmd (see plugins/js/package.json)"
    js_importable \
        || die "js toolchain: componentize-js is installed but cannot be loaded (a missing runtime dependency? see plugins/js/package.json)"
}

# ------------------------------------------------------------------ build

is_component() {
    [ "$(od -An -tx1 -j4 -N4 "$1" 2>/dev/null | tr -d ' \n')" = "0d000100" ]
}

# check_world FILE: a component (bytes 4..8 = 0d 00 01 00) and, if
# wasm-tools is installed, importing host-loop and exporting guest and state.
check_world() {
    is_component "$1" || { echo "$1: not a wasm component" >&2; return 1; }
    command -v wasm-tools >/dev/null || return 0
    local w
    w="$(wasm-tools component wit "$1")" || return 1
    grep -qF "import callop:plugin/host-loop@$version;" <<<"$w" \
        || { echo "$1: does not import callop:plugin/host-loop@$version" >&2; return 1; }
    grep -qF "export callop:plugin/guest@$version;" <<<"$w" \
        || { echo "$1: does not export callop:plugin/guest@$version" >&2; return 1; }
    grep -qF "export callop:plugin/state@$version;" <<<"$w" \
        || { echo "$1: does not export callop:plugin/state@$version" >&2; return 1; }
}

# up_to_date OUT INPUT... : OUT exists and no input file is newer.
up_to_date() {
    local o="$1"; shift
    [ "$force" = 0 ] && [ -f "$o" ] && is_component "$o" || return 1
    [ -z "$(find "$@" -type f -newer "$o" -not -path '*/__pycache__/*' -print -quit 2>/dev/null)" ]
}

# plugin_world DIR: sets `pwit` (the WIT directory, repo-relative) and
# `pworld` of the plugin in DIR: its WORLD file, else callop's world.
plugin_world() {
    pwit=wit pworld=plugin-with-state
    [ -f "$1/WORLD" ] || return 0
    read -r pwit pworld _ <"$1/WORLD" || true
    [ -n "$pwit" ] && [ -n "$pworld" ] || die "$1/WORLD: expected one line '<wit-dir> <world>'"
    [ -d "$root/$pwit" ] || die "$1/WORLD: no WIT directory $pwit (relative to the repository root)"
}

wanted() { # wanted LANG NAME
    case " ${bare[*]} " in *" $1 "*) return 0 ;; esac
    case " ${only[*]} " in *" $1/$2 "*) return 0 ;; esac
    return 1
}

built=0 skipped=0 failed=0
report() { # report LANG NAME FILE SECONDS
    printf '%-16s %s (%s bytes, %ss)\n' "$1-$2" "$3" "$(wc -c <"$3" | tr -d ' ')" "$4"
}

build_python() { # build_python NAME
    local name="$1" dir="$here/python/$1" o="$out/python-$1.wasm"
    plugin_world "$dir"
    if up_to_date "$o" "$dir" "$here/python/callop.py" "$wit" "$root/$pwit/" "$here/python/.venv/bin/componentize-py"; then
        skipped=$((skipped + 1)); echo "python-$name     up to date: $o"; return 0
    fi
    local t0=$SECONDS log="$out/python-$name.log"
    # The component's entry module is the helper library (callop.py, which
    # implements the guest export and imports the plugin's app.py).
    if (cd "$root" && "$here/python/.venv/bin/componentize-py" -d "$root/$pwit" -w "$pworld" \
            componentize callop -p "$here/python" -p "$dir" -o "$o.tmp") >"$log" 2>&1 \
        && check_world "$o.tmp" 2>>"$log"; then
        mv "$o.tmp" "$o"; built=$((built + 1)); report python "$name" "$o" $((SECONDS - t0))
    else
        rm -f "$o.tmp"; failed=$((failed + 1)); cat "$log" >&2; echo "python-$name: build FAILED (log: $log)" >&2
    fi
}

build_js() { # build_js NAME
    local name="$1" dir="$here/js/$1" o="$out/js-$1.wasm"
    plugin_world "$dir"
    if up_to_date "$o" "$dir" "$here/js/callop.js" "$wit" "$root/$pwit/" "$here/js/node_modules/@bytecodealliance/componentize-js/package.json"; then
        skipped=$((skipped + 1)); echo "js-$name         up to date: $o"; return 0
    fi
    local t0=$SECONDS log="$out/js-$name.log" stage="$out/.js-$name"
    # Generated entry module: wraps the plugin's exports into the `guest`
    # export. componentize-js maps the current directory (the repo root)
    # as `/`, so repo-relative imports resolve at build (wizer) time.
    mkdir -p "$stage"
    local rel_stage="${stage#"$root"/}"
    [ "$rel_stage" != "$stage" ] || die "CALLOP_POLYGLOT_OUT must be inside the repository for JS builds"
    local up; up="$(echo "$rel_stage" | sed 's#[^/][^/]*#..#g')"
    cat >"$stage/entry.js" <<EOF
// Generated by plugins/polyglot.sh: do not edit.
import * as plugin from '$up/plugins/js/$name/app.js';
import { makeGuest } from '$up/plugins/js/callop.js';
import { makeState } from '$up/plugins/js/callop.js';
export const guest = makeGuest(plugin);
export const state = makeState(plugin);
EOF
    if (cd "$root" && "$here/js/node_modules/.bin/componentize-js" "$rel_stage/entry.js" \
            --wit "$pwit" -n "$pworld" -d http fetch-event -o "$o.tmp") >"$log" 2>&1 \
        && check_world "$o.tmp" 2>>"$log"; then
        mv "$o.tmp" "$o"; built=$((built + 1)); report js "$name" "$o" $((SECONDS - t0))
    else
        rm -f "$o.tmp"; failed=$((failed + 1)); cat "$log" >&2; echo "js-$name: build FAILED (log: $log)" >&2
    fi
}

mkdir -p "$out"
for lang in "${langs[@]}"; do
    case "$lang" in
        python) install_python; file=app.py ;;
        js) install_js; file=app.js ;;
    esac
    found=0
    for d in "$here/$lang"/*/; do
        name="$(basename "$d")"
        [ -f "$d/$file" ] || continue
        case "$name" in node_modules|.venv|__pycache__) continue ;; esac
        wanted "$lang" "$name" || continue
        found=1
        "build_$lang" "$name"
    done
    [ "$found" = 1 ] || note "no $lang plugin matched"
done
note "built $built, up to date $skipped, failed $failed (output: $out)"
[ "$failed" = 0 ]
