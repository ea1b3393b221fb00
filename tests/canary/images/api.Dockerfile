# A small HTTP API in front of PostgreSQL, built on the PostgreSQL image the canary uses
# (it brings psql) with a static busybox for the HTTP server: no registry, no apt.
ARG POSTGRES_IMAGE
FROM ${POSTGRES_IMAGE}
USER root
COPY busybox /usr/local/bin/busybox
COPY api.cgi /srv/api/cgi-bin/visits
USER postgres
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/busybox", "httpd", "-f", "-v", "-p", "8080", "-h", "/srv/api"]
