#!/usr/bin/env bash
# Install what the browser tests need: Debian's Chromium and the Playwright Python package.
# Playwright's own browser download (`playwright install`) is not used: the tests launch
# /usr/bin/chromium, so no browser is fetched from a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
"$PY" -c "import playwright" 2>/dev/null || "$PY" -m pip install -q playwright
echo "browser tests ready: /usr/bin/chromium + playwright"
