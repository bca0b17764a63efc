#!/usr/bin/env bash
# Installs the proxies the proxy tests go through when they are missing: tinyproxy (HTTP
# CONNECT) and microsocks (SOCKS5), with apt-get on Debian and Ubuntu; elsewhere it prints the
# command to run and fails.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }
if have tinyproxy && have microsocks; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "tinyproxy or microsocks is missing: run as root: apt-get install -y tinyproxy microsocks" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "tinyproxy or microsocks is missing: installing them (apt-get install -y tinyproxy microsocks)" >&2
  $sudo apt-get update -qq
  # The package would start tinyproxy as a service: the tests start their own.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq tinyproxy microsocks >/dev/null
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
