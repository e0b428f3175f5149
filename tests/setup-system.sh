#!/bin/sh
# The system packages the whole test suite needs, installed with apt-get (Debian, Ubuntu)
# when missing; safe to run again. `nox -s tests` and CI run it.
#
#   nodejs, npm    the official socket.io / socket.io-client peers, the browser bundle
#   chromium       the browser tests (headless; CHROMIUM may name another browser instead),
#                  with fonts-liberation for its pages
#   redis-server   the Redis adapters' tests (each test module starts its own server, or a
#                  cluster of three with redis-cli from redis-tools)
#   nginx          the reverse-proxy test (it runs its own nginx; the package's service is
#                  kept from starting while it installs)
#   haproxy        a cookie-sticky load balancer, and
#   tinyproxy      an HTTP CONNECT proxy, for the client's real-network tests (each test
#                  runs its own on free loopback ports; their services are kept from starting)
#
# Uses sudo when not root. TRIO_SIO_NO_APT=1 installs nothing: the tests that need a
# missing program are then skipped (or fail under CI); `nox -s unit` needs none of them.
set -eu

if [ -n "${TRIO_SIO_NO_APT:-}" ]; then
    echo "TRIO_SIO_NO_APT is set: no system packages installed"
    exit 0
fi

missing=""
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    missing="$missing chromium fonts-liberation"
fi
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
# redis-cli forms the Redis Cluster of the sharded adapter's tests (Debian's redis-server
# depends on redis-tools; this is for a machine where it does not)
command -v redis-cli >/dev/null 2>&1 || missing="$missing redis-tools"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    missing="$missing nginx"
fi
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    missing="$missing haproxy"
fi
if ! command -v tinyproxy >/dev/null 2>&1 && [ ! -x /usr/bin/tinyproxy ] \
    && [ ! -x /usr/sbin/tinyproxy ]; then
    missing="$missing tinyproxy"
fi
if [ -z "$missing" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing:$missing; install them, or set TRIO_SIO_NO_APT=1 (or use nox -s unit)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing with apt-get:$missing (TRIO_SIO_NO_APT=1 skips this)"

# A policy-rc.d that says "no" (Debian's convention) keeps nginx's and redis' services from
# starting while they install; the tests start their own.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
fi
trap '[ -z "$policy" ] || $sudo rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086  # the package names are words
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
