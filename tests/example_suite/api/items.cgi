#!/bin/sh
# {"items": N, "names": [...]}: the rows of table items, as JSON built by PostgreSQL.
. /etc/api-env
body=$(PGPASSWORD="$DB_PASSWORD" psql -h "$DB_HOST" -U "$DB_USER" -d "$DB_NAME" -tAc \
    "SELECT json_build_object('items', count(*), 'names', coalesce(json_agg(name ORDER BY name), '[]'::json)) FROM items" 2>&1)
if [ $? -eq 0 ]; then
    printf 'Content-Type: application/json\r\n\r\n%s\n' "$body"
else
    printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n%s\n' "$body"
fi
