#!/usr/bin/env bash
# Install PostgreSQL + PostGIS from Debian's packages when missing (needs root or sudo and apt).
set -euo pipefail
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
if [ -n "$pg_bin" ] && ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install PostgreSQL + PostGIS: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
command -v apt-get >/dev/null || { echo "no apt-get: install PostgreSQL and PostGIS with your package manager" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql-postgis pulls the PostGIS build matching Debian's default PostgreSQL.
$SUDO apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib postgresql-postgis >/dev/null
