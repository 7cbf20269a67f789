#!/usr/bin/env bash
# Install the DNSLink specification's test harness (@dnslink/test on npm) into tools/dnslink-test.
# Pinned: scripts/dnslink-test/package.json names the version and package-lock.json the exact
# tree with integrity hashes (`npm ci` installs exactly that, no install scripts run).
# Reused when the installed copy matches. Needs Node.js and npm (Debian: apt-get install nodejs npm).
# tests/test_dnslink_harness.py runs it; the harness starts its own DNS server, bound to
# 127.0.0.1 by scripts/dnslink-test/loopback.cjs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/scripts/dnslink-test"
dest="$root/tools/dnslink-test"
pins=(package.json package-lock.json)
installed() {
  [ -f "$dest/node_modules/@dnslink/test/bin/dnslink-test" ] || return 1
  for f in "${pins[@]}"; do cmp -s "$src/$f" "$dest/$f" || return 1; done
}
if installed; then
  cmp -s "$src/loopback.cjs" "$dest/loopback.cjs" || cp "$src/loopback.cjs" "$dest/loopback.cjs"
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "install-dnslink-test: $tool is needed (apt-get install nodejs npm, or see nodejs.org)" >&2; exit 1; }
done
mkdir -p "$dest"
for f in "${pins[@]}" loopback.cjs; do cp "$src/$f" "$dest/$f"; done
echo "install-dnslink-test: installing @dnslink/test from the npm registry into tools/dnslink-test" >&2
# --prefer-offline: tarballs already in npm's cache (~/.npm) are used without asking the registry
# again; the lock file's integrity hashes are checked either way
(cd "$dest" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
installed || { echo "install-dnslink-test: npm ci finished but @dnslink/test is not in $dest" >&2; exit 1; }
node -e 'console.log("@dnslink/test " + require(process.argv[1]).version)' "$dest/node_modules/@dnslink/test/package.json"
