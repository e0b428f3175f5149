#!/bin/sh
# Installs the Node packages the browser tests need; safe to run again:
#
#   * the Node packages of tests/browser (Playwright's driver, without its browser downloads),
#     of examples/chat and examples/game (the Socket.IO browser client the examples serve)
#     and of tests/admin (the Socket.IO Admin UI's built page, and its Node server for the
#     interop test).
#
# Chromium itself is a system package: tests/setup-system.sh installs it (with nodejs,
# npm, redis-server and nginx), or CHROMIUM names a browser to use instead.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)

if [ -n "${CHROMIUM:-}" ] && [ ! -x "$CHROMIUM" ]; then
    echo "CHROMIUM=$CHROMIUM is not an executable file" >&2
    exit 1
fi

for dir in tests/browser examples/chat examples/game tests/admin; do
    echo "npm ci in $dir"
    (cd "$root/$dir" && npm ci --no-audit --no-fund)
done
