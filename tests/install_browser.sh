#!/bin/sh
# Installs the browser tests/test_web_browser.py drives: Debian's chromium and chromium-driver
# (apt packages; Playwright's own browser download is not used). Run by the README's test
# command. Never fails: without apt (or the right to use it) it says so, and the browser tests
# skip with that reason (or fail where DEEPFILL_REQUIRE_BROWSER=1, as in .ci/run).
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: chromium is missing and there is no apt-get to install it; browser tests will not run" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo -n"  # non-interactive: fails instead of asking for a password
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing chromium and chromium-driver with apt-get (for the browser tests)" >&2
if ! $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null \
    || echo "warning: could not install chromium with apt-get; browser tests will not run" >&2
fi
exit 0
