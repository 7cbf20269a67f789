#!/usr/bin/env bash
# Install the IPFS Pinning Service API's compliance checker (@ipfs-shipyard/pinning-service-compliance)
# and an in-memory implementation of the API (mock-ipfs-pinning-service) from npm into
# tools/pinning-compliance. Pinned: scripts/pinning-compliance/package.json names the versions and
# package-lock.json the exact tree with integrity hashes (`npm ci` installs exactly that, no
# install scripts run: the `kubo` package's download of a binary is skipped; the checker never
# starts a node). Reused when the installed copy matches. Needs Node.js and npm.
# tests/test_pinning_service.py runs both, offline (scripts/pinning-compliance/offline.cjs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/scripts/pinning-compliance"
dest="$root/tools/pinning-compliance"
pins=(package.json package-lock.json)
extras=(offline.cjs mock-server.cjs pace.mjs)
installed() {
  [ -f "$dest/node_modules/@ipfs-shipyard/pinning-service-compliance/dist/src/index.js" ] || return 1
  [ -f "$dest/node_modules/mock-ipfs-pinning-service/index.js" ] || return 1
  for f in "${pins[@]}"; do cmp -s "$src/$f" "$dest/$f" || return 1; done
}
if installed; then
  for f in "${extras[@]}"; do cmp -s "$src/$f" "$dest/$f" || cp "$src/$f" "$dest/$f"; done
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "install-pinning-compliance: $tool is needed (apt-get install nodejs npm, or see nodejs.org)" >&2; exit 1; }
done
mkdir -p "$dest"
for f in "${pins[@]}" "${extras[@]}"; do cp "$src/$f" "$dest/$f"; done
echo "install-pinning-compliance: installing the compliance checker and mock service from the npm registry into tools/pinning-compliance" >&2
# --prefer-offline: tarballs already in npm's cache (~/.npm) are used without asking the registry
# again; the lock file's integrity hashes are checked either way
(cd "$dest" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
installed || { echo "install-pinning-compliance: npm ci finished but the packages are not in $dest" >&2; exit 1; }
node -e 'for (const p of process.argv.slice(1)) { const j = require(p); console.log(j.name + " " + j.version) }' \
  "$dest/node_modules/@ipfs-shipyard/pinning-service-compliance/package.json" "$dest/node_modules/mock-ipfs-pinning-service/package.json"
