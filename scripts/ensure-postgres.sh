#!/usr/bin/env bash
# Makes sure PostgreSQL answers at 127.0.0.1:5432 (trust auth, database
# "test") and that the clients the wire tests drive are installed: psql,
# psycopg2, SQLAlchemy and pandas for the system python3, pgJDBC and Java.
# Starts the local cluster if it is down; exits non-zero if it cannot, so
# tests never skip silently.
set -euo pipefail
need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# Debian's python3-psycopg2 belongs to the system python3, which is the one
# the wire test runs (a pyenv python3 earlier on PATH would not see it).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import psycopg2' >/dev/null 2>&1 || need_apt+=(python3-psycopg2)
"$py" -c 'import sqlalchemy' >/dev/null 2>&1 || need_apt+=(python3-sqlalchemy)
"$py" -c 'import pandas' >/dev/null 2>&1 || need_apt+=(python3-pandas)
# pgJDBC, for the wire tests' JDBC client (Java 17 is on the machine).
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! ready; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL server is not installed; installing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  echo "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
if ! ready; then
  echo "FATAL: PostgreSQL is not answering on 127.0.0.1:5432" >&2
  exit 1
fi
# Trust auth for user postgres and a database named test.
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'SELECT 1' >/dev/null 2>&1; then
  su postgres -c "psql -Atc 'CREATE DATABASE test'" >/dev/null 2>&1 || \
    psql -h 127.0.0.1 -U postgres -d postgres -Atc 'CREATE DATABASE test' >/dev/null
fi
psql -h 127.0.0.1 -U postgres -d test -Atc 'SELECT 1' >/dev/null
echo "PostgreSQL ready at 127.0.0.1:5432"
