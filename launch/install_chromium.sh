#!/usr/bin/env bash
# Installs Debian's chromium for the demo's browser test (tests/demo_test.py), if missing.
# As root (or with password-less sudo) it runs apt-get; otherwise it says what to run
# and exits 0: the browser test is then skipped (or fails where
# MIRRORGAN_REQUIRE_BROWSER=1, as in CI).
set -euo pipefail
if [[ -n "${MIRRORGAN_CHROMIUM:-}" ]] || command -v chromium >/dev/null \
    || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install_chromium: chromium not found and not root; run" \
       "'sudo apt-get install chromium' for the demo's browser test" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_chromium: no apt-get; install Chromium and set MIRRORGAN_CHROMIUM" >&2
  exit 0
fi
echo "Installing Debian's chromium (for the demo's browser test)..."
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
  chromium >/dev/null
chromium --version
