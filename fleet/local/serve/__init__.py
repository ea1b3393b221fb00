"""``python -m fleet serve``: the autoscaler of a local fleet, for one machine.

- ``intake``: jobs webhooks announced, deduplicated on delivery id (a bounded ledger);
- ``jobs_file``: the intake's snapshot on disk, so a restarted serve still serves a job
  queued before the restart;
- ``webhook_server``: ``workflow_job`` deliveries on a local port, checked by
  ``fleet.core.webhook`` (the same code as the AWS webhook function), answered at once;
- ``catch_up``: redelivery of failed deliveries and look-ups of jobs without news, as the
  AWS reaper does;
- ``reconciler``: one cycle (observe, clear away, decide, realise);
- ``autoscaler``: the loop that runs cycles and the webhook server.
"""
