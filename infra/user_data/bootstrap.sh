#!/usr/bin/env bash
# runner-bootstrap: prepare this runner host, then start its one-job (JIT) runner.
#
# Runs as root from runner-boot.service on every boot: a warm-pool instance boots once to be
# prepared and again when it enters service. Settings come from /etc/runner-fleet/fleet.env and
# are names and paths only; the JIT config is fetched from SSM here and never passes through
# user data, a command line or the journal.
#
# `runner-bootstrap --bake-only` (EC2 Image Builder's build step, infra/image_pipeline.py)
# makes an image instead: tools, bundle, bake, the baked marker, exit 0. It reads no IMDS
# lifecycle state, fetches no JIT config, leaves the Docker volume alone (an image has none)
# and never terminates its instance: a failure exits non-zero and Image Builder reports it.
set -Eeuo pipefail
umask 077

BAKE_ONLY=false
case "$#:${1:-}" in
  0:) ;;
  1:--bake-only) BAKE_ONLY=true ;;
  *)
    printf 'usage: runner-bootstrap [--bake-only]\n' >&2
    exit 2
    ;;
esac

# This boot's settings are the ones cloud-init writes from this instance's user data: on an
# image made from a configured instance the file on disk may still be the old instance's.
# (cloud-init starts this unit without waiting for it, so this cannot wait on itself.)
if command -v cloud-init >/dev/null; then
  cloud-init status --wait >/dev/null || true
fi
# shellcheck source=/dev/null
. /etc/runner-fleet/fleet.env

readonly IMDS=http://169.254.169.254/latest
readonly VENV=/opt/runner-fleet/venv
# The bundle as unpacked: playbooks/, tests/canary/ and runner-vars.yml (the stack's
# runnerVars, extra variables of both playbooks).
readonly BUNDLE=/opt/runner-fleet/bundle
readonly PLAYBOOKS=$BUNDLE/playbooks
readonly STATE=/var/lib/runner-fleet
readonly WORK=/run/runner-fleet
readonly INVENTORY=/etc/runner-fleet/inventory.yml
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION" PATH="$VENV/bin:$PATH"

log() { printf 'runner-bootstrap: %s\n' "$*" >&2; }

cleanup() {
  rm -f "$WORK/jitconfig" "$WORK/boot-vars.json" "$WORK/imds-header"
}

# A shutdown or reboot (a warm-pool instance being stopped, a reboot mid-bake) stops this
# script and its children: that is not a failed boot, and the next boot starts over.
stopping=false
on_stop() {
  stopping=true
  log "stopped by a shutdown or reboot; the next boot goes on from here"
  exit 143
}

on_error() {
  local status=$?
  trap - ERR
  cleanup
  if [[ "$stopping" == true || "$(systemctl is-system-running 2>/dev/null)" == stopping ]]; then
    log "stopped by a shutdown or reboot (exit $status); the next boot goes on from here"
    exit 143
  fi
  if [[ "$BAKE_ONLY" == true ]]; then
    log "bake failed (exit $status); no image is made from this instance"
    exit "$status"
  fi
  log "boot failed (exit $status); this instance leaves its group"
  /usr/local/sbin/runner-terminate-self "boot failed" || true
  exit "$status"
}

# IMDSv2 only (the launch template requires tokens). The token goes in a header file so it
# does not show up in `ps`.
imds() {
  local token
  token="$(curl -fsS --retry 5 --retry-connrefused -X PUT "$IMDS/api/token" \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
  printf 'X-aws-ec2-metadata-token: %s\n' "$token" >"$WORK/imds-header"
  curl -fsS --retry 5 -H "@$WORK/imds-header" "$IMDS/meta-data/$1"
  rm -f "$WORK/imds-header"
}

install_tools() {
  # A boot interrupted inside dpkg (a reboot mid-bake) leaves packages half configured;
  # apt refuses to work until they are finished.
  dpkg --configure -a
  if [[ -x "$VENV/bin/aws" && -x "$VENV/bin/ansible-playbook" ]]; then
    return 0
  fi
  log "installing ansible $ANSIBLE_VERSION and awscli $AWSCLI_VERSION"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    python3-venv python3-apt curl ca-certificates e2fsprogs
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "ansible==$ANSIBLE_VERSION" "awscli==$AWSCLI_VERSION"
}

# Nitro instances show EBS volumes as NVMe disks whatever the launch template calls them, so
# the Docker volume is the disk that is not the root disk and has exactly its configured size.
docker_disk() {
  local want root_disk name size type
  if [[ -b "$DOCKER_DEVICE" ]]; then
    readlink -f "$DOCKER_DEVICE"
    return 0
  fi
  want=$((DOCKER_VOLUME_GIB * 1024 * 1024 * 1024))
  root_disk="$(lsblk -npo PKNAME "$(findmnt -no SOURCE /)")"
  while read -r name size type; do
    if [[ "$type" == disk && "$size" == "$want" && "$name" != "$root_disk" ]]; then
      printf '%s\n' "$name"
      return 0
    fi
  done < <(lsblk -dnpbo NAME,SIZE,TYPE)
  return 1
}

mount_docker_volume() {
  local disk uuid restart_docker=false
  if mountpoint -q /var/lib/docker; then
    return 0
  fi
  if ! disk="$(docker_disk)"; then
    log "no ${DOCKER_VOLUME_GIB} GiB Docker volume attached"
    return 1
  fi
  if ! blkid -o value -s TYPE "$disk" >/dev/null; then
    mkfs.ext4 -q -L runner-docker "$disk"
  fi
  if systemctl is-active --quiet docker.service; then
    restart_docker=true
    systemctl stop docker.socket docker.service
  fi
  mkdir -p /var/lib/docker
  # By UUID: a label is the same on every runner's volume (and on a volume an image was
  # made with), a UUID names this one.
  uuid="$(blkid -o value -s UUID "$disk")"
  sed -i '\|[[:space:]]/var/lib/docker[[:space:]]|d' /etc/fstab
  printf 'UUID=%s /var/lib/docker ext4 defaults,nofail 0 2\n' "$uuid" >>/etc/fstab
  mount /var/lib/docker
  if [[ "$restart_docker" == true ]]; then
    systemctl start docker.service
  fi
}

fetch_bundle() {
  log "fetching s3://$BUNDLE_BUCKET/$BUNDLE_KEY"
  if ! aws s3 cp --only-show-errors "s3://$BUNDLE_BUCKET/$BUNDLE_KEY" "$WORK/bundle.zip"; then
    log "cannot download the bundle s3://$BUNDLE_BUCKET/$BUNDLE_KEY (the error is above)"
    return 1
  fi
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE"
  if ! python3 -m zipfile -t "$WORK/bundle.zip" >/dev/null \
    || ! python3 -m zipfile -e "$WORK/bundle.zip" "$BUNDLE" \
    || [[ ! -f "$PLAYBOOKS/boot.yml" ]]; then
    log "the bundle s3://$BUNDLE_BUCKET/$BUNDLE_KEY is not a playbook bundle"
    return 1
  fi
  rm -f "$WORK/bundle.zip"
}

run_playbook() {
  local playbook="$1"
  shift
  # umask 022: what the playbooks install (the agent, the toolchain, the canary) is read by
  # the runner user; this script's own 077 is for its secrets.
  (
    umask 022
    cd "$PLAYBOOKS"
    ansible-playbook -i "$INVENTORY" "$playbook" -e "@$BUNDLE/runner-vars.yml" "$@"
  )
}

# A warm-pool instance (target state Warmed:*) is prepared now: tell the group (it then stops
# the instance, or keeps it running), and wait until it enters service. A Stopped instance is
# powered off in this wait and runs this script again when it is started; a Running one
# goes on from here.
wait_in_warm_pool() {
  local state="$1" instance_id
  instance_id="$(imds instance-id)"
  log "prepared for the warm pool ($state); telling the group"
  aws autoscaling complete-lifecycle-action --auto-scaling-group-name "$ASG_NAME" \
    --lifecycle-hook-name "$LAUNCH_HOOK_NAME" --instance-id "$instance_id" \
    --lifecycle-action-result CONTINUE
  while [[ "$state" == Warmed:* ]]; do
    sleep 5
    state="$(imds autoscaling/target-lifecycle-state || printf '%s' "$state")"
  done
  log "leaving the warm pool ($state)"
}

# The control plane writes the parameter when the launch lifecycle hook fires, which may be
# after this point; wait for it up to the boot deadline. Until it exists, reads are denied
# (the policy matches on its tag), so any error means "not yet".
fetch_jit_config() {
  local name="$PARAMETER_ROOT/runners/$1/jitconfig" deadline
  deadline=$(($(date +%s) + JIT_WAIT_SECONDS))
  until aws ssm get-parameter --with-decryption --name "$name" \
    --query Parameter.Value --output text >"$WORK/jitconfig" 2>/dev/null; do
    if (($(date +%s) >= deadline)); then
      log "no JIT config at $name after ${JIT_WAIT_SECONDS}s"
      return 1
    fi
    sleep 5
  done
  # Single use: delete it before anything else can read it.
  aws ssm delete-parameter --name "$name"
  python3 - "$WORK/jitconfig" "$WORK/boot-vars.json" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as source:
    value = source.read().strip()
with open(sys.argv[2], "w", encoding="utf-8") as target:
    json.dump({"actions_runner_jitconfig": value}, target)
PY
  rm -f "$WORK/jitconfig"
}

# The image build: what an instance would do before its bake, the bake, and the marker that
# makes every instance launched from the image skip it.
bake_only() {
  mkdir -p "$WORK" "$STATE"
  chmod 700 "$WORK"
  trap on_error ERR
  trap on_stop TERM
  trap cleanup EXIT

  log "baking an image (--bake-only)"
  install_tools
  log "tools installed"
  fetch_bundle
  log "running the bake part"
  run_playbook bake.yml
  touch "$STATE/baked"
  log "bake done; the image is ready"
}

main() {
  local state instance_id
  mkdir -p "$WORK" "$STATE"
  chmod 700 "$WORK"
  trap on_error ERR
  trap on_stop TERM
  trap cleanup EXIT

  log "starting (baked image: $BAKED_IMAGE)"
  install_tools
  log "tools installed"
  mount_docker_volume
  log "Docker volume mounted"
  fetch_bundle
  if [[ "$BAKED_IMAGE" != true && ! -e "$STATE/baked" ]]; then
    log "running the bake part"
    run_playbook bake.yml
    touch "$STATE/baked"
  fi
  log "bake done"

  state="$(imds autoscaling/target-lifecycle-state || true)"
  if [[ "$state" == Warmed:* ]]; then
    wait_in_warm_pool "$state"
  fi

  instance_id="$(imds instance-id)"
  fetch_jit_config "$instance_id"
  log "JIT config fetched"
  run_playbook boot.yml -e "@$WORK/boot-vars.json"
  rm -f "$WORK/boot-vars.json"
  log "runner started"

  # A job that ended while the boot part was still finishing was skipped by the service's
  # ExecStopPost (boot not complete yet); leave now in that case.
  if ! systemctl is-active --quiet actions-runner.service; then
    /usr/local/sbin/runner-terminate-self "runner stopped during boot"
  fi
}

if [[ "$BAKE_ONLY" == true ]]; then
  bake_only
else
  main
fi
