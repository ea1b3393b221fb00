"""The program's own names and defaults: tag keys it sets, secret keys, default images,
instance types and network. Pure constants, shared by the stack model and its checks."""

from __future__ import annotations

NAMESPACE = "runner-fleet"
# Tag on every resource; the instance policy's terminate statement is conditioned on it.
FLEET_TAG = "runner-fleet"
# Tag the control plane puts on each JIT parameter (value: the instance's ARN). The instance
# policy only lets a caller whose ec2:SourceInstanceARN equals this tag read or delete it.
JIT_INSTANCE_TAG = "runner-fleet-instance-arn"
# Tag on each instance naming the SSM file-transfer bucket of its fleet; the validation
# inventory (playbooks/inventories/aws_ec2.yml) reads it for the aws_ssm connection.
SSM_BUCKET_TAG = "runner-fleet-ssm-bucket"
# Tag on a baked AMI (value "true") that the image lifecycle policy must keep whatever its age:
# an image you roll back to (docs/deploy-aws.md, "Images"). Never one of the stack's tags, or
# every image would carry it and none would ever be deleted.
IMAGE_KEEP_TAG = "runner-fleet-keep"
# Tags the program sets itself.
PROGRAM_TAGS = (FLEET_TAG, "managed-by", SSM_BUCKET_TAG)
SECRET_KEYS = ("githubAppId", "githubAppPrivateKey", "githubWebhookSecret")
# Only githubMode webhook has a webhook to check signatures of (stack.secret_problems).
WEBHOOK_SECRET_KEY = SECRET_KEYS[2]
# How the control plane learns about jobs (stack key githubMode, FLEET_GITHUB_MODE): a public
# webhook function, or a runner scale set a listener function long-polls (docs/control-plane.md).
GITHUB_MODES = ("webhook", "scaleSet")
SCALE_SET_MODE = "scaleSet"

# Official image owners and name patterns; {arch} is amd64 or arm64.
AMI_FILTERS: dict[str, tuple[str, str]] = {
    "debian-13": ("136693071363", "debian-13-{arch}-*"),
    "ubuntu-24.04": (
        "099720109477",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*",
    ),
}
DEFAULT_INSTANCE_TYPES = {
    "x86_64": ("m7i.xlarge", "m6i.xlarge", "m6a.xlarge"),
    "arm64": ("m7g.xlarge", "m6g.xlarge", "m8g.xlarge"),
}
DEFAULT_VPC_CIDR = "10.64.0.0/16"
