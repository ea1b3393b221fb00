#!/bin/sh
# GET /cgi-bin/visits: count the visits; POST: record one and answer the new count.
# PostgreSQL is reached by its network alias (DB_HOST); psql exits non-zero on any error.
set -u
query() {
    PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=5 psql -h "$DB_HOST" -U "$DB_USER" \
        -d "$DB_NAME" -v ON_ERROR_STOP=1 -tAqc "$1" 2>&1
}
case "$REQUEST_METHOD" in
    POST) answer=$(query "INSERT INTO visits DEFAULT VALUES; SELECT count(*) FROM visits") ;;
    *) answer=$(query "SELECT count(*) FROM visits") ;;
esac
status=$?
if [ "$status" -eq 0 ]; then printf 'Status: 200 OK\r\n'; else printf 'Status: 502 Bad Gateway\r\n'; fi
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$answer"
