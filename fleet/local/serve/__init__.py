"""``python -m fleet serve``: the local fleet's autoscaler (intake, webhook server,
reconciler, autoscaler loop, jobs file)."""
