#!/usr/bin/env bash
# Make BIND 9 (`named`, `named-checkconf`, `tsig-keygen`) available for the DNS tests.
# Reused when present (fast); otherwise installed from the distribution (Debian: bind9).
# Only the binaries are used: the system service is neither enabled nor started
# (tests run their own `named -g` on 127.0.0.1 with a high port, see tests/dns_server.py).
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"
have() { command -v named >/dev/null 2>&1 && command -v named-checkconf >/dev/null 2>&1; }
if have; then
  exit 0
fi
. "$(dirname "$0")/apt-privileges.sh"
apt_privileges install-dns "BIND 9 (named)" bind9
echo "install-dns: installing BIND 9 from apt (bind9, without the service started)" >&2
# policy-rc.d 101 keeps the package's maintainer scripts from starting the service
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends bind9 bind9-utils >/dev/null
have || { echo "install-dns: bind9 installed but named/named-checkconf not found on PATH" >&2; exit 1; }
named -v
