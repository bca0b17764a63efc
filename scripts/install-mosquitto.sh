#!/usr/bin/env bash
# Installs mosquitto and its command-line clients when they are missing: with apt-get on
# Debian and Ubuntu; elsewhere it prints the command to run and fails.
set -euo pipefail
# The failover proof's independent subscriber is mosquitto_sub: the broker alone is not enough.
if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
  && command -v mosquitto_sub >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "mosquitto is missing: run as root: apt-get install -y mosquitto mosquitto-clients" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "mosquitto is missing: installing it (apt-get install -y mosquitto mosquitto-clients)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  exit 0
fi
cat >&2 <<'MSG'
mosquitto is missing. Install it, then run this again:
  Fedora/RHEL:  sudo dnf install mosquitto
  Arch:         sudo pacman -S mosquitto
  macOS:        brew install mosquitto
  Alpine:       sudo apk add mosquitto mosquitto-clients
MSG
exit 1
