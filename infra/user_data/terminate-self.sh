#!/usr/bin/env bash
# runner-terminate-self: this host ran its one job (or cannot run one); it leaves its group.
# Called with a reason by runner-bootstrap; without one (ExecStopPost of actions-runner)
# only once the boot is complete, so a restart during boot does not end the instance.
set -uo pipefail

# shellcheck source=/dev/null
. /etc/runner-fleet/fleet.env

readonly IMDS=http://169.254.169.254/latest
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION" PATH="/opt/runner-fleet/venv/bin:$PATH"

reason="${1:-}"
if [[ -z "$reason" ]]; then
  if ! systemctl is-active --quiet runner-boot.service; then
    exit 0
  fi
  reason="runner finished (${SERVICE_RESULT:-unknown}, ${EXIT_CODE:-unknown} ${EXIT_STATUS:-})"
  if [[ "${EXIT_STATUS:-}" == 7 ]]; then # agent too old: infra/agent_report.py
    reason="agent too old for GitHub (exit 7)"
    aws cloudwatch put-metric-data --namespace "$METRICS_NAMESPACE" \
      --metric-name RunnerAgentOutdated --value 1 || true
  fi
fi

umask 077
header="$(mktemp)"
trap 'rm -f "$header"' EXIT
token="$(curl -fsS --retry 5 -X PUT "$IMDS/api/token" \
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')"
printf 'X-aws-ec2-metadata-token: %s\n' "$token" >"$header"
instance_id="$(curl -fsS --retry 5 -H "@$header" "$IMDS/meta-data/instance-id")"

logger -t runner-terminate-self "$reason: $instance_id leaves $ASG_NAME"

# Decrement, so the group does not launch a replacement nobody asked for.
if aws autoscaling terminate-instance-in-auto-scaling-group --instance-id "$instance_id" \
  --should-decrement-desired-capacity >/dev/null; then
  exit 0
fi
# At minSize the group refuses to shrink: leave without decrement.
if aws autoscaling terminate-instance-in-auto-scaling-group --instance-id "$instance_id" \
  --no-should-decrement-desired-capacity >/dev/null; then
  exit 0
fi
# Last resort: the launch template sets shutdown behaviour to terminate.
logger -t runner-terminate-self "Auto Scaling call failed; powering off (terminates)"
systemctl poweroff --no-block
