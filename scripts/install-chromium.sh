#!/usr/bin/env bash
# Make a headless Chromium available for the real-browser tests (tests/browser.py drives it
# with Playwright through `executable_path`, so Playwright never downloads a browser).
# Reused when present (fast); otherwise installed from the distribution (Debian: chromium).
# Prints the binary's path and version on stdout.
set -euo pipefail
find_chromium() {
  for name in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}
if path=$(find_chromium); then
  echo "$path: $("$path" --version 2>/dev/null || echo 'version unknown')"
  exit 0
fi
. "$(dirname "$0")/apt-privileges.sh"
apt_privileges install-chromium Chromium chromium
echo "install-chromium: installing Chromium from apt (chromium)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
path=$(find_chromium) || { echo "install-chromium: chromium installed but not found on PATH" >&2; exit 1; }
echo "$path: $("$path" --version 2>/dev/null || echo 'version unknown')"
