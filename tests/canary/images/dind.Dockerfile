# A docker:dind stand-in from Debian's docker.io, for hosts that cannot pull the official image.
# Run it privileged; /var/lib/docker is a volume so the nested engine can use overlay2.
ARG BASE_IMAGE=fleet/debian:trixie
FROM ${BASE_IMAGE}
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends \
        docker.io docker-cli iptables busybox-static ca-certificates openssl; \
    apt-get clean; rm -rf /var/lib/apt/lists/*
COPY dind-entrypoint.sh /usr/local/bin/dind-entrypoint.sh
VOLUME /var/lib/docker
EXPOSE 2375 2376
ENTRYPOINT ["/usr/local/bin/dind-entrypoint.sh"]
CMD ["dockerd"]
