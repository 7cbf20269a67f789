# Sourced by the install-*.sh scripts: sets the array `sudo` to what runs apt-get as root
# (nothing when we are root, `sudo -n` when that works), or exits saying what to install.
#   usage: apt_privileges TOOL "WHAT IS MISSING" PACKAGES
apt_privileges() {
  local tool=$1 what=$2 packages=$3
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$tool: $what is missing and apt-get is not available; install $packages with your package manager" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "$tool: $what is missing; run as root or install it: apt-get install $packages" >&2
    exit 1
  fi
}
