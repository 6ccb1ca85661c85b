#!/bin/sh
# Installs what the browser tests need (tests/test_web_browser.py, tests/test_web_portable.py):
# Debian's chromium and chromium-driver (apt packages; Playwright's own browser download is not
# used), and ONNX Runtime Web for export.py --format web from the npm registry, exactly as
# web/package-lock.json pins it (npm ci; node and npm from apt when missing). Run by the
# README's test command. Never fails: without apt or npm (or the right to use them) it says so,
# and the browser tests skip with that reason (or fail where DEEPFILL_REQUIRE_BROWSER=1, as in
# .ci/run).
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo -n"  # non-interactive: fails instead of asking for a password
fi
export DEBIAN_FRONTEND=noninteractive

apt_install() {  # apt_install WHAT PACKAGE...
  what=$1
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: $what is missing and there is no apt-get to install it; browser tests will not run" >&2
    return 1
  fi
  echo "installing $* with apt-get (for the browser tests)" >&2
  if ! $SUDO apt-get install -y -qq "$@" >/dev/null; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$@" >/dev/null \
      || { echo "warning: could not install $* with apt-get; browser tests will not run" >&2; return 1; }
  fi
}

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt_install chromium chromium chromium-driver
fi

WEB="$(dirname "$0")/../web"
if ! command -v npm >/dev/null 2>&1; then
  apt_install npm nodejs npm
fi
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix "$WEB" --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
    || echo "warning: npm ci in web/ failed; the static-site browser tests will not run" >&2
fi
exit 0
