#!/bin/sh
# Prepare a privileged container for a nested dockerd (what docker:dind's `dind` script does),
# then run the command: `dockerd ...` by default.
set -eu
if [ -d /sys/kernel/security ] && ! mountpoint -q /sys/kernel/security; then
    mount -t securityfs none /sys/kernel/security || :
fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # cgroup v2: controllers can only be delegated once no process sits in the root group.
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control
fi
rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid
exec "$@"
