#!/usr/bin/env bash
# Make a headless Chromium available for the HTML report's browser test
# (tests/show/test_browser.py). Idempotent: run it as often as you like.
#
#   .ci/browser.sh        # installs Debian's chromium when /usr/bin/chromium is missing
#
# The Python driver (playwright) comes with the dev extra (`pip install -e .[dev]`, done by
# `make test`); this script never runs `playwright install` (no browser downloads): the test
# launches the system chromium. Needs root or sudo for apt-get, on Debian (Ubuntu's
# chromium package is only a snap shim). LRKIT_CHROMIUM overrides the browser path; the
# test reads the same variable. Progress goes to stderr; stdout carries the version line.
set -euo pipefail

CHROMIUM=${LRKIT_CHROMIUM:-/usr/bin/chromium}
log() { echo "browser.sh: $*" >&2; }

if [ ! -x "$CHROMIUM" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "need root or sudo to apt-get install chromium"; exit 1; }
        SUDO=sudo
    fi
    log "installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq chromium >&2
fi
[ -x "$CHROMIUM" ] || { log "$CHROMIUM is still missing after apt-get install chromium"; exit 1; }
"$CHROMIUM" --headless --no-sandbox --disable-gpu --version 2>/dev/null
