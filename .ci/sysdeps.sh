#!/usr/bin/env bash
# Installs the system packages the service and its tests need, only when missing.
set -euo pipefail
need=()
ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' || need+=(libmagic1)
# The web view tests drive Debian's Chromium (never a downloaded browser).
if [ "${1:-}" = "--with-browser" ] && [ ! -x /usr/lib/chromium/chromium ]; then
  need+=(chromium)
fi
# The PostgreSQL catalog tests start Debian's server (tests/pg_server.py globs its bin dir).
if [ "${1:-}" = "--with-browser" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
fi
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
