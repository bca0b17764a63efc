# Sourced by the install scripts: installing Debian packages as root, or through sudo.

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Fails, naming the command to run, when we are neither root nor able to use sudo.
# Usage: need_root WHAT PACKAGE...
need_root() {
  local what=$1
  shift
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "$what is missing: run as root: apt-get install -y $*" >&2
    exit 1
  fi
}

# Installs the packages with apt-get, saying what was missing. Services the packages would
# start are not started (RUNLEVEL=1): the tests start servers of their own.
# Usage: apt_install WHAT PACKAGE...
apt_install() {
  local what=$1
  shift
  need_root "$what" "$@"
  echo "$what is missing: installing it (apt-get install -y $*)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "$@" >/dev/null
}
