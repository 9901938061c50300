#!/bin/sh
# Runs the web client's tests with Node 20's built-in runner (no npm dependencies): the codec
# against every byte example of docs/PROTOCOL.md, and the client logic against an in-memory
# WebTransport. Usage: clients/web/test.sh (from anywhere).
set -eu
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1; then
    echo "clients/web/test.sh: node not found (Node 20 or later is needed)" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "clients/web/test.sh: Node $major is too old (20 or later is needed)" >&2
    exit 1
fi
exec node --test test/codec.test.js test/client.test.js
