#!/bin/sh
# Initialise a fresh cluster from POSTGRES_* like the official image, then run the server.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
pwfile=$(mktemp)
printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
"$bin/initdb" --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
rm -f "$pwfile"
printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "$db" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
