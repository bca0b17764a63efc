#!/usr/bin/env bash
# Installs the proxies the proxy tests go through when they are missing: tinyproxy (HTTP
# CONNECT) and microsocks (SOCKS5), with apt-get on Debian and Ubuntu; elsewhere it prints the
# command to run and fails.
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }
if have tinyproxy && have microsocks; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  apt_install "tinyproxy or microsocks" tinyproxy microsocks
  exit 0
fi
cat >&2 <<'MSG'
tinyproxy or microsocks is missing. Install them, then run this again:
  Fedora/RHEL:  sudo dnf install tinyproxy microsocks
  Arch:         sudo pacman -S tinyproxy microsocks
  macOS:        brew install tinyproxy microsocks
  Alpine:       sudo apk add tinyproxy microsocks
MSG
exit 1
