#!/usr/bin/env bash
# PostgreSQL server binaries for the `postgres` tests (tests/test_tune_postgres.py start their own
# throw-away server with initdb/pg_ctl on 127.0.0.1). Idempotent and quiet: does nothing when
# /usr/lib/postgresql/*/bin/initdb (Debian) or initdb on PATH is already there.
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

if have_postgres; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "postgres-setup: no apt-get here; install the PostgreSQL server (initdb, pg_ctl) yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have_postgres || { echo "postgres-setup: postgresql installed but initdb not found" >&2; exit 1; }
