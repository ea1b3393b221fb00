"""Lambda entry points of the control plane (each module's ``handler``).

- ``webhook.handler``: function URL -> signature check -> SQS (answers GitHub fast)
- ``scaler.handler``: SQS batches and a schedule -> job ledger -> one scaling cycle
- ``lifecycle.handler``: Auto Scaling lifecycle and EC2 spot events -> JIT configs, release
- ``reaper.handler``: schedule -> dead, offline and expired runners; reconciler
"""
