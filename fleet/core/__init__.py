"""What both fleets share: scaling decisions, the job model and ledger, the webhook pipeline,
the retire sequence, and the GitHub side (``core.github``). Imports neither ``fleet.aws`` nor
``fleet.local``; shipped in the control plane's Lambda package."""
