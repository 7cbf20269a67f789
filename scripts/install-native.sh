#!/usr/bin/env bash
# Build and install HaloDB's compiled hot loops (native/, Rust via maturin) into the venv.
# Usage: scripts/install-native.sh PYTHON
# Without cargo, HaloDB runs on its Python path (slower): a note here, nothing fails — except
# under CI (CI=true), where a missing part must fail, never be skipped. rustup's usual
# place (~/.cargo/bin) is looked in when cargo is not on PATH. Crates come from crates.io,
# pinned by native/Cargo.lock.
set -euo pipefail
python=${1:?usage: install-native.sh PYTHON}
cd "$(dirname "$0")/.."
PATH="$PATH:$HOME/.cargo/bin"
if ! command -v cargo >/dev/null 2>&1; then
  case "${CI:-}" in
    [Tt][Rr][Uu][Ee]|1|[Yy][Ee][Ss])
      echo "install-native: cargo not found (install Rust: https://rustup.rs); under CI the native module is required" >&2
      exit 1 ;;
  esac
  echo "install-native: cargo not found: HaloDB runs without its compiled hot loops (slower); install Rust (https://rustup.rs) and run make install again" >&2
  exit 0
fi
echo "install-native: building native/ (Rust, release; the first build takes a minute)" >&2
"$python" -m pip install --quiet ./native
