# The simulation's "official Debian 13 cloud image": what such an image ships that the
# runner boot relies on (systemd, cloud-init, python3, curl, CA certificates), and nothing
# the product installs itself (no Ansible, no Docker, no AWS CLI).
# Test-only additions, named as such: the build machine's CA certificates (TLS to PyPI is
# inspected on the way out here) and a NoCloud datasource without network configuration
# (the container's network is Docker's).
ARG BASE_IMAGE=fleet/debian:trixie
FROM ${BASE_IMAGE}
ENV container=docker
COPY machine-ca/ /usr/local/share/ca-certificates/simulation/
COPY 90-simulation.cfg /etc/cloud/cloud.cfg.d/90-simulation.cfg
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends \
        systemd systemd-sysv dbus cloud-init curl ca-certificates iproute2 procps sudo; \
    update-ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    systemctl mask systemd-modules-load.service getty.target console-getty.service \
        systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service \
        sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; \
    : > /etc/machine-id
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
