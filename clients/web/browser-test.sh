#!/bin/sh
# Runs the web client in a real browser: headless Chromium (Debian's `chromium`, driven by
# puppeteer-core from npm, no browser download) against a real `huddle serve` with a native
# `huddle client` in the same rooms (browser/run.mjs). Installs chromium with apt-get when it is
# missing and root can, the npm runner into browser/node_modules, and builds `huddle`.
# Without a browser and with CI unset it says it skipped; with CI=true it never skips.
# Usage: clients/web/browser-test.sh (from anywhere). Exits non-zero on a failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ci=${CI:-}

find_chromium() {
    for c in "${CHROMIUM:-}" /usr/lib/chromium/chromium /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

if ! chromium=$(find_chromium); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "browser-test: installing chromium with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    if ! chromium=$(find_chromium); then
        if [ "$ci" = true ]; then
            echo "browser-test: no chromium and none could be installed (CI=true: not skipping)" >&2
            exit 1
        fi
        echo "browser-test: SKIPPED (no chromium; install Debian's chromium or set CHROMIUM=PATH)"
        exit 0
    fi
fi
if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    if [ "$ci" = true ]; then
        echo "browser-test: Node 20 or later is needed" >&2
        exit 1
    fi
    echo "browser-test: SKIPPED (Node 20 or later is needed)"
    exit 0
fi

cd "$here/browser"
if [ ! -d node_modules/puppeteer-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "browser-test: npm ci (puppeteer-core, no browser download)"
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

cd "$root"
if [ "$ci" = true ]; then
    cargo build --frozen --bin huddle
else
    cargo build --bin huddle
fi
huddle="${CARGO_TARGET_DIR:-$root/target}/debug/huddle"

echo "browser-test: $("$chromium" --version 2>/dev/null || echo "$chromium")"
exec node "$here/browser/run.mjs" "$huddle" "$chromium"
