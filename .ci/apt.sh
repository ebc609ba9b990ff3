# shellcheck shell=bash
# Sourced by .ci/run and .ci/windows.sh: the checks' tools from Debian's
# packages, with one `apt-get update` per script.

# apt_install PACKAGE...: 0 once installed; 1 without apt-get here; 2 when
# `apt-get update` failed; 3 when the install failed.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ -z "${apt_updated:-}" ]; then
    timeout 300 apt-get update -qq >/dev/null 2>&1 || return 2
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$@" >/dev/null 2>&1 || return 3
}
