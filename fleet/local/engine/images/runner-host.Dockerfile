# A runner host: Debian with systemd as PID 1, ready for the playbooks.
# Built by `python -m fleet bootstrap` on top of a locally debootstrapped base
# (no registry needed). Everything a job needs is added by the playbooks.
ARG BASE_IMAGE=fleet/debian:trixie
FROM ${BASE_IMAGE}
ENV container=docker
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends \
        systemd systemd-sysv dbus python3 python3-apt ca-certificates iproute2 procps; \
    # Package lists stay: a fresh list is what the playbooks' apt cache check expects.
    apt-get clean; \
    # Units that have nothing to do in a container (no kernel modules, no consoles).
    systemctl mask systemd-modules-load.service getty.target console-getty.service \
        systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service \
        sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; \
    : > /etc/machine-id
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
