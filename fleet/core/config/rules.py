"""What AWS (and GitHub) accept, written once: name rules, limits and the shared patterns.

Each rule cites the API reference it comes from. The stack model (``stack``), the derived names
(``names``) and the environment settings (``settings``) all check against these, so a regular
expression or a limit exists in one place only. Pure: no AWS call, no pulumi.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata

# -- GitHub -----------------------------------------------------------------------------------

# A fleet's short name: it prefixes resource names, SSM paths and autonamed resources (S3
# bucket names are lowercase), so it is narrower than anything AWS would take.
FLEET_NAME = re.compile(r"[a-z][a-z0-9-]{0,22}[a-z0-9]")
FLEET_NAME_HINT = "use 2-24 characters: lowercase letters, digits and '-', starting with a letter"
# GitHub user and organisation logins: 1-39 alphanumerics and single inner hyphens.
GITHUB_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
GITHUB_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
# Runner labels as GitHub's runner API takes them.
RUNNER_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RUNNER_LABELS_MAX = 100
RUNNER_GROUP_MAX_LENGTH = 100
# A runner scale set's name: what jobs name in `runs-on`, so a label's characters, at most 64.
SCALE_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SCALE_SET_NAME_HINT = (
    "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (jobs name it "
    "in runs-on)"
)
GITHUB_API_URL = re.compile(r"https?://[^/\s]+(/\S*)?")

# -- EC2, KMS, accounts -----------------------------------------------------------------------

INSTANCE_TYPE = re.compile(r"([a-z][a-z0-9-]*)\.([a-z0-9-]+)")
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
KMS_KEY_ARN_HINT = "expected arn:aws:kms:<region>:<account>:key/<key-id> (not an alias)"
ACCOUNT_ID = re.compile(r"\d{12}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f")
SQS_QUEUE_URL = re.compile(r"https://\S+")
# The longest instance id EC2 hands out (i- and 17 hex digits), for the JIT parameter's name.
LONGEST_INSTANCE_ID = "i-" + "f" * 17

# Auto Scaling: max_instance_lifetime (when set) is 1 day to 365 days.
ASG_MIN_INSTANCE_LIFETIME_S = 86_400
ASG_MAX_INSTANCE_LIFETIME_S = 31_536_000
# Auto Scaling: a group's size and its lifecycle hook's heartbeat; the program's own cap.
MAX_GROUP_SIZE = 1000

# -- Lambda -----------------------------------------------------------------------------------

# A function's environment variables, keys and values, in all (Lambda quotas).
LAMBDA_ENVIRONMENT_MAX_BYTES = 4096
# What runnerLabels may take of that: the rest (names, ARNs, URLs, numbers) stays below 2 KB
# for any accepted config (tests/unit/infra/test_infra_names.py proves it).
RUNNER_LABELS_MAX_CHARACTERS = 2048

# -- SSM --------------------------------------------------------------------------------------

# The longest parameter ARN prefix (partition aws-us-gov, the longest region names), which
# counts against SSM's 1011-character limit on the whole ARN.
LONGEST_PARAMETER_ARN_PREFIX = "arn:aws-us-gov:ssm:ap-southeast-7:123456789012:parameter"
SSM_PARAMETER_MAX_ARN_LENGTH = 1011
SSM_PARAMETER_MAX_DEPTH = 15
# ssmParameterPrefix: path segments (dots refused: the prefix also names resources that refuse
# them, see stack.py).
SSM_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
SSM_PREFIX_HINT = (
    "use letters, digits, '_', '-' and '/' (no leading or trailing '/', no empty segment)"
)
SSM_RESERVED_PREFIXES = ("aws", "ssm")

# -- Tags (every tagging service) -------------------------------------------------------------

TAG_KEY_MAX_LENGTH = 128
TAG_VALUE_MAX_LENGTH = 256
TAGS_PER_RESOURCE = 50
# The program sets a few tags itself; the rest is the user's.
EXTRA_TAGS_MAX = 40
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def tag_text_allowed(text: str) -> bool:
    """Characters every tagging AWS service accepts: letters, digits and spaces (any script)
    and _ . : / = + - @ (pattern [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)."""
    return all(unicodedata.category(c)[0] in "LZN" or c in _TAG_PUNCTUATION for c in text)


def tag_problem(key: str, value: str) -> str | None:
    """Why AWS would refuse the tag ``key``: ``value``, or None."""
    if key.lower().startswith("aws:") or not 1 <= len(key) <= TAG_KEY_MAX_LENGTH:
        return (
            f"tag {key!r}: keys are 1-{TAG_KEY_MAX_LENGTH} characters and may not start with "
            f"'aws:'; values at most {TAG_VALUE_MAX_LENGTH}"
        )
    if len(value) > TAG_VALUE_MAX_LENGTH:
        return f"tag {key!r}: the value is {len(value)} characters; AWS allows at most 256"
    if value.lower().startswith("aws:"):
        return f"tag {key!r}: AWS reserves values starting with 'aws:'"
    if not (tag_text_allowed(key) and tag_text_allowed(value)):
        return (
            f"tag {key!r}: {value!r}: keys and values take letters, digits, spaces and "
            "_ . : / = + - @ only (what every tagging AWS service accepts)"
        )
    return None


# -- Names of resources -----------------------------------------------------------------------

# Pulumi autonames a resource without an explicit name: its logical name, '-' and 7 random
# characters.
AUTONAME_SUFFIX = 8


@dataclasses.dataclass(frozen=True)
class NameRule:
    """What AWS accepts for one kind of name (API reference: length and pattern)."""

    what: str
    max_length: int
    pattern: re.Pattern[str]
    allowed: str
    min_length: int = 1

    def problem(self, name: str) -> str | None:
        """Why AWS would refuse ``name``, or None."""
        if not self.min_length <= len(name) <= self.max_length:
            return (
                f"the {self.what} {name!r} is {len(name)} characters; AWS allows "
                f"{self.min_length}-{self.max_length}"
            )
        if not self.pattern.fullmatch(name):
            return f"the {self.what} {name!r} has characters AWS refuses; it allows {self.allowed}"
        return None


_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")

NAME_RULES: dict[str, NameRule] = {
    # CreateAutoScalingGroup: AutoScalingGroupName, 1-255, [\u0020-\uD7FF\uE000-\uFFFD]+.
    "autoscaling_group": NameRule(
        "Auto Scaling group name", 255, _PRINTABLE, "printable characters"
    ),
    # PutLifecycleHook: LifecycleHookName, 1-255, [A-Za-z0-9\-_\/]+.
    "lifecycle_hook": NameRule(
        "lifecycle hook name", 255, re.compile(r"[A-Za-z0-9_/-]+"), "letters, digits, - _ /"
    ),
    # CreateFunction: FunctionName (a plain name), 1-64, [a-zA-Z0-9-_]+.
    "function": NameRule(
        "Lambda function name", 64, re.compile(r"[A-Za-z0-9_-]+"), "letters, digits, - _"
    ),
    # CreateLogGroup: logGroupName, 1-512, [\.\-_/#A-Za-z0-9]+.
    "log_group": NameRule(
        "CloudWatch log group name",
        512,
        re.compile(r"[A-Za-z0-9_./#-]+"),
        "letters, digits, - _ . / #",
    ),
    # CreateQueue: QueueName, 1-80 of [A-Za-z0-9-_]; a FIFO queue's name ends in .fifo (the
    # suffix counts), and only a FIFO queue's may (see queue_problem).
    "queue": NameRule("SQS queue name", 80, re.compile(r"[A-Za-z0-9_-]+"), "letters, digits, - _"),
    "fifo_queue": NameRule(
        "SQS FIFO queue name",
        80,
        re.compile(r"[A-Za-z0-9_-]+\.fifo"),
        "letters, digits, - _ and the suffix .fifo",
    ),
    # CreateTable: TableName, 3-255, [a-zA-Z0-9_.-]+.
    "table": NameRule(
        "DynamoDB table name", 255, re.compile(r"[A-Za-z0-9_.-]+"), "letters, digits, - _ .", 3
    ),
    # PutMetricAlarm: AlarmName, 1-255, no control characters.
    "alarm": NameRule("CloudWatch alarm name", 255, _PRINTABLE, "printable characters"),
    # CreateAlias: AliasName, 1-256, alias/[a-zA-Z0-9/_-]+, never alias/aws/.
    "kms_alias": NameRule(
        "KMS alias",
        256,
        re.compile(r"alias/(?!aws/)[A-Za-z0-9/_-]+"),
        "alias/ then letters, digits, - _ / (not alias/aws/)",
    ),
    # Image Builder Create*: name, 3-128, [-_A-Za-z-0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z-0-9].
    "image_builder": NameRule(
        "Image Builder resource name",
        128,
        re.compile(r"[-_A-Za-z0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z0-9]"),
        "letters, digits, - and _ (spaces inside)",
        3,
    ),
    # PutParameter: Name, within a 1011-character ARN, /-separated [a-zA-Z0-9_.-] segments
    # (depth and reserved prefixes: ssm_parameter_problem).
    "parameter": NameRule(
        "SSM parameter name",
        SSM_PARAMETER_MAX_ARN_LENGTH - len(LONGEST_PARAMETER_ARN_PREFIX),
        re.compile(r"(/[A-Za-z0-9_.-]+)+"),
        "/-separated segments of letters, digits, - _ .",
    ),
    # Autonamed by Pulumi (logical name + AUTONAME_SUFFIX), so the limits leave room for it.
    # CreateRole: RoleName, 1-64, [\w+=,.@-]+.
    "iam_role": NameRule(
        "IAM role name (logical name + Pulumi's suffix)",
        64 - AUTONAME_SUFFIX,
        re.compile(r"[\w+=,.@-]+"),
        "letters, digits, + = , . @ - _",
    ),
    # CreateInstanceProfile: InstanceProfileName, 1-128, [\w+=,.@-]+.
    "instance_profile": NameRule(
        "IAM instance profile name (logical name + Pulumi's suffix)",
        128 - AUTONAME_SUFFIX,
        re.compile(r"[\w+=,.@-]+"),
        "letters, digits, + = , . @ - _",
    ),
    # PutRule: Name, 1-64, [\.\-_A-Za-z0-9]+.
    "event_rule": NameRule(
        "EventBridge rule name (logical name + Pulumi's suffix)",
        64 - AUTONAME_SUFFIX,
        re.compile(r"[A-Za-z0-9_.-]+"),
        "letters, digits, - _ .",
    ),
    # CreateBucket: 3-63 lowercase letters, digits, '-' (and '.'), starting and ending with a
    # letter or digit.
    "bucket": NameRule(
        "S3 bucket name (logical name + Pulumi's suffix)",
        63 - AUTONAME_SUFFIX,
        re.compile(r"[a-z0-9][a-z0-9-]*"),
        "lowercase letters, digits, -",
        3,
    ),
}


def queue_problem(name: str, *, fifo: bool) -> str | None:
    """Why SQS would refuse ``name`` for a standard (or FIFO) queue, or None."""
    return NAME_RULES["fifo_queue" if fifo else "queue"].problem(name)


def ssm_parameter_problem(name: str) -> str | None:
    """Why SSM would refuse the parameter name ``name``, or None."""
    problem = NAME_RULES["parameter"].problem(name)
    if problem:
        return problem
    depth = name.count("/")
    if depth > SSM_PARAMETER_MAX_DEPTH:
        return (
            f"the SSM parameter name {name!r} is {depth} levels deep; SSM allows "
            f"{SSM_PARAMETER_MAX_DEPTH}"
        )
    if name[1:].lower().startswith(SSM_RESERVED_PREFIXES):
        return f"the SSM parameter name {name!r} starts with 'aws' or 'ssm', which SSM reserves"
    return None
