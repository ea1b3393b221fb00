"""The AWS instance simulation: one EC2 runner instance's whole life, run on this machine.

What is real: the Pulumi program's own rendering (user data, bundle, instance policy, group,
hooks, function environment; the program runs under Pulumi's mocks), cloud-init's NoCloud
boot of a Debian 13 container, `runner-bootstrap`, the playbooks from the bundle, the AWS
CLI and its signed calls, the lifecycle function's code, the job and `runner-terminate-self`.
What stands in for AWS and GitHub: moto in server mode (IAM enforced with the program's
policy documents), a fake IMDSv2 (tests/fakes/imds.py), a loop device as the EBS Docker
volume, the fake GitHub and the fake runner agent. See tests/e2e/test_aws_instance.py.
"""
