#!/usr/bin/env bash
# PostgreSQL for the monitor's tests: Debian's server, a running cluster, and a database owned
# by a role named after the current OS user, reached over the local Unix socket with peer
# authentication (Debian's default) -- so there is no password to create, store or leak.
# Tests use $TUNEFORGE_TEST_PG_URL if set, else
# postgresql:///tuneforge_test?host=/var/run/postgresql, and skip with the reason otherwise.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
    $SUDO pg_createcluster "$VERSION" main >/dev/null
fi
pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}' | grep -qx online \
    || $SUDO pg_ctlcluster "$VERSION" main start
ROLE="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
    as_postgres() { su postgres -s /bin/bash -c "$(printf '%q ' "$@")"; }
else
    as_postgres() { sudo -u postgres "$@"; }
fi
as_postgres psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'" | grep -q 1 \
    || as_postgres psql -qc "CREATE ROLE \"$ROLE\" LOGIN"
as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname='tuneforge_test'" | grep -q 1 \
    || as_postgres psql -qc "CREATE DATABASE tuneforge_test OWNER \"$ROLE\""
echo "PostgreSQL $VERSION ready: postgresql:///tuneforge_test?host=/var/run/postgresql (peer auth)"
