# PostgreSQL from Debian's package, for hosts that cannot pull the official image.
# It honours the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB.
ARG BASE_IMAGE=fleet/debian:trixie
FROM ${BASE_IMAGE}
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends postgresql; \
    apt-get clean; rm -rf /var/lib/apt/lists/*
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
