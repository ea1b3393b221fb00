"""AWS adapters of the control plane, one module per service: thin boto3 wrappers that speak
the fleet's types.

Every adapter takes its boto3 client as an argument (tests pass moto-backed or stubbed ones;
``aws_clients`` builds real ones with standard retry mode: throttling and transient errors are
retried with exponential backoff and a retry quota, so a storm cannot turn into a retry storm).
Each method makes a known, small number of calls; the scaler's cost per cycle follows from
them (see bench/control_plane.py).

Idempotence is part of each contract: terminating an instance that is already gone, deleting
a parameter that was already read, completing a lifecycle action twice or recording a job
event twice are normal outcomes here, not errors.
"""
