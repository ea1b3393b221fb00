#!/bin/sh
# 200 once the database answers through the network alias.
. /etc/api-env
if PGPASSWORD="$DB_PASSWORD" psql -h "$DB_HOST" -U "$DB_USER" -d "$DB_NAME" -tAc 'SELECT 1' >/dev/null 2>&1; then
    printf 'Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n'
else
    printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ndatabase not ready\n'
fi
