#!/bin/sh
# Installs what the browser tests need; safe to run again.
#
#   * Chromium: Debian's package, unless /usr/bin/chromium is there already or CHROMIUM names
#     a browser to use instead (the tests honour CHROMIUM too).
#   * the Node packages of tests/browser (Playwright's driver, without its browser downloads),
#     of examples/chat (the Socket.IO browser client the example serves) and of tests/admin
#     (the Socket.IO Admin UI's built page, and its Node server for the interop test).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)

if [ -n "${CHROMIUM:-}" ]; then
    if [ ! -x "$CHROMIUM" ]; then
        echo "CHROMIUM=$CHROMIUM is not an executable file" >&2
        exit 1
    fi
elif [ ! -x /usr/bin/chromium ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    $sudo apt-get install -y chromium
fi

for dir in tests/browser examples/chat examples/game tests/admin; do
    echo "npm ci in $dir"
    (cd "$root/$dir" && npm ci --no-audit --no-fund)
done
