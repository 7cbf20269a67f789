#!/usr/bin/env bash
# Build and install HaloDB's compiled hot loops (native/, Rust via maturin) into the venv.
# Usage: scripts/install-native.sh PYTHON
# Without cargo, or when the build fails, HaloDB runs on its Python path (slower): a note here,
# nothing fails — except under CI (CI=true, 1 or yes, as tests/requirements.py reads it), where
# a missing part must fail, never be skipped. rustup's usual
# place (~/.cargo/bin) is looked in when cargo is not on PATH. Crates come from crates.io,
# pinned by native/Cargo.lock.
set -euo pipefail
python=${1:?usage: install-native.sh PYTHON}
cd "$(dirname "$0")/.."
PATH="$PATH:$HOME/.cargo/bin"
under_ci() { case "${CI:-}" in [Tt][Rr][Uu][Ee]|1|[Yy][Ee][Ss]) return 0 ;; esac; return 1; }
if ! command -v cargo >/dev/null 2>&1; then
  if under_ci; then
    echo "install-native: cargo not found (install Rust: https://rustup.rs); under CI the native module is required" >&2
    exit 1
  fi
  echo "install-native: cargo not found: HaloDB runs without its compiled hot loops (slower); install Rust (https://rustup.rs) and run make install again" >&2
  exit 0
fi
echo "install-native: building native/ (Rust >= 1.74, release; the first build takes a minute)" >&2
if ! "$python" -m pip install --quiet ./native; then
  if under_ci; then
    echo "install-native: the build of native/ failed (above); under CI the native module is required" >&2
    exit 1
  fi
  echo "install-native: the build of native/ failed (above: an older Rust than 1.74, no access to crates.io?): HaloDB runs without its compiled hot loops (slower); fix it and run make install again" >&2
fi
