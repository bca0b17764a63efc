#!/usr/bin/env bash
# Installs what `bench quic`'s emulated link needs when it is missing: `ip` (iproute2) for the
# network namespace and TUN devices, and `iptables` for the rule that forwards the link to
# 127.0.0.1; with apt-get on Debian and Ubuntu, elsewhere it prints the command and fails.
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
if have ip && have iptables; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  apt_install "ip or iptables" iproute2 iptables
  exit 0
fi
cat >&2 <<'MSG'
ip or iptables is missing. Install them, then run this again:
  Fedora/RHEL:  sudo dnf install iproute iptables
  Arch:         sudo pacman -S iproute2 iptables
  Alpine:       sudo apk add iproute2 iptables
MSG
exit 1
