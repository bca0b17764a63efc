#!/usr/bin/env bash
# Installs mosquitto and its command-line clients when they are missing: with apt-get on
# Debian and Ubuntu; elsewhere it prints the command to run and fails.
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"
# The failover proof's independent subscriber is mosquitto_sub: the broker alone is not enough.
if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
  && command -v mosquitto_sub >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  apt_install mosquitto mosquitto mosquitto-clients
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
