#!/usr/bin/env bash
# Installs PostgreSQL's server when it is missing, for the tests that start one of their own
# (integration/src/postgres.rs): with apt-get on Debian and Ubuntu, without the cluster and
# service Debian would create and start; elsewhere it prints what to install and fails.
set -euo pipefail
. "$(dirname "$0")/lib/apt.sh"
if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  need_root PostgreSQL postgresql
  # The tests run servers of their own: no system cluster, no service listening on 5432.
  as_root mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  apt_install PostgreSQL postgresql
  exit 0
fi
cat >&2 <<'MSG'
PostgreSQL's server is missing. Install it (any version from 13), then run this again:
  Fedora/RHEL:  sudo dnf install postgresql-server
  Arch:         sudo pacman -S postgresql
  macOS:        brew install postgresql
Point MOORING_PG_BIN at the directory of its programs (initdb, postgres, pg_isready, createdb)
if they are not in /usr/lib/postgresql/N/bin or on the PATH. Tests running as root run the
server as the user "postgres", which must exist.
MSG
exit 1
