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
# A binary this script built before, on this machine, from the same Kubo version with the same Go, is
# copied rather than linked again (a fresh clone has no tools/: the build took ~40 s even with Go's caches
# warm). KUBO_CACHE= (empty) turns this off.
cache_dir="${KUBO_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/halodb/kubo}"
cached=""
if [ -n "$cache_dir" ]; then
  cached="$cache_dir/ipfs-$KUBO_VERSION-$(go env GOVERSION GOOS GOARCH | tr '\n' '-')bin"
  if [ -x "$cached" ] && "$cached" version 2>/dev/null | grep -q "${KUBO_VERSION#v}"; then
    mkdir -p "$root/tools/bin"
    cp "$cached" "$bin.tmp" && mv "$bin.tmp" "$bin"
    echo "install-kubo: Kubo $KUBO_VERSION copied from $cached (built here before)" >&2
    "$bin" version
    exit 0
  fi
fi
build="$root/tools/kubo-build"
rm -rf "$build"
mkdir -p "$build" "$root/tools/bin"
cd "$build"
printf 'module halodb.invalid/kubo-build\n\ngo 1.26\n' > go.mod
echo "install-kubo: building Kubo $KUBO_VERSION (about two minutes the first time)" >&2
go get "github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION" >/dev/null 2>&1 || go get "github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION"
go build -trimpath -o "$bin.tmp" github.com/ipfs/kubo/cmd/ipfs
mv "$bin.tmp" "$bin"
if [ -n "$cached" ] && mkdir -p "$cache_dir" 2>/dev/null && cp "$bin" "$cached.tmp.$$" 2>/dev/null; then
  mv "$cached.tmp.$$" "$cached"
fi
"$bin" version
