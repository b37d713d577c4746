#!/usr/bin/env bash
# Headless Chromium for the `browser` tests (tests/test_report_browser.py: the predict report in
# a real browser, driven by selenium through chromedriver). Debian's packages only, never a
# browser build downloaded by a test tool. Idempotent and quiet: does nothing when
# /usr/bin/chromium and /usr/bin/chromedriver are already there.
set -euo pipefail

have_chromium() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

if have_chromium; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium-setup: no apt-get here; install chromium and chromedriver yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
have_chromium || { echo "chromium-setup: installed but /usr/bin/chromium or chromedriver missing" >&2; exit 1; }
