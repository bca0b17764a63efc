#!/usr/bin/env bash
# Installs what the PKCS#11 tests need when it is missing: SoftHSM2 (a software token) and
# OpenSC's pkcs11-tool (which makes keys inside it), with apt-get on Debian and Ubuntu;
# elsewhere it prints the command to run and fails.
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"
module_found() {
  [ -n "${SOFTHSM2_MODULE:-}" ] && [ -e "$SOFTHSM2_MODULE" ] && return 0
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so \
           /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && return 0
  done
  return 1
}
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }
if module_found && have softhsm2-util && have pkcs11-tool; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  apt_install "SoftHSM2 or pkcs11-tool" softhsm2 opensc
  exit 0
fi
cat >&2 <<'MSG'
SoftHSM2 or pkcs11-tool is missing. Install them, then run this again:
  Fedora/RHEL:  sudo dnf install softhsm opensc
  Arch:         sudo pacman -S softhsm opensc
  macOS:        brew install softhsm opensc
  Alpine:       sudo apk add softhsm opensc
MSG
exit 1
