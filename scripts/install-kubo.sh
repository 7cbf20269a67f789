#!/usr/bin/env bash
# Build Kubo (the IPFS daemon the tests run) from the Go module proxy into tools/bin/ipfs.
# Pinned version; reused when present. Kubo's own go.mod carries an `exclude` block, which
# `go install pkg@version` refuses, so it is built from a two-line wrapper module instead:
# the same sources from the proxy, the ordinary `go get` + `go build`.
set -euo pipefail
KUBO_VERSION="${KUBO_VERSION:-v0.42.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/tools/bin/ipfs"
if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "${KUBO_VERSION#v}"; then
  exit 0
fi
command -v go >/dev/null || { echo "install-kubo: Go is needed to build Kubo (apt-get install golang, or see go.dev)" >&2; exit 1; }
build="$root/tools/kubo-build"
rm -rf "$build"
mkdir -p "$build" "$root/tools/bin"
cd "$build"
printf 'module halodb.invalid/kubo-build\n\ngo 1.26\n' > go.mod
echo "install-kubo: building Kubo $KUBO_VERSION (about two minutes the first time)" >&2
go get "github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION" >/dev/null 2>&1 || go get "github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION"
go build -trimpath -o "$bin.tmp" github.com/ipfs/kubo/cmd/ipfs
mv "$bin.tmp" "$bin"
"$bin" version
