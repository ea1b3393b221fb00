# A docker:dind stand-in from Debian's docker.io, for hosts that cannot pull the official image.
# Run it privileged; /var/lib/docker is a volume so the nested engine can use overlay2.
ARG BASE_IMAGE=fleet/debian:trixie
FROM ${BASE_IMAGE}
# The nested engine runs containers through containerd's runc v2 shim only: the v1 shims and
# the ctr debugging tool are 48 MB that every host would load for nothing.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends \
        docker.io docker-cli iptables busybox-static ca-certificates openssl; \
    rm -f /usr/bin/ctr /usr/bin/containerd-shim /usr/bin/containerd-shim-runc-v1; \
    apt-get clean; rm -rf /var/lib/apt/lists/*
COPY dind-entrypoint.sh /usr/local/bin/dind-entrypoint.sh
VOLUME /var/lib/docker
EXPOSE 2375 2376
ENTRYPOINT ["/usr/local/bin/dind-entrypoint.sh"]
CMD ["dockerd"]
