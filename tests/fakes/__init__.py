"""Every test double of the project, in one place.

- GitHub: ``github_api`` (the REST API: App JWTs, installation tokens, runners, runner groups,
  hook deliveries, injected failures), grown by ``github`` (workflow jobs, re-runs,
  redeliveries played back to a webhook; the integration layer) and by ``github_jobs`` (a job
  broker for the fake runner agent; serve and the e2e layer), with ``runner_agent`` the agent
  itself; ``payloads`` makes signed ``workflow_job`` deliveries. Runner scale sets:
  ``scaleset_github`` (registration, the service and its message queue on the same fake
  GitHub; state in ``scaleset_service``, admin routes in ``scaleset_routes``) and
  ``scaleset_agent`` (a step-by-step agent and a threaded loopback server), and
  ``scaleset_hosts`` (a local fleet's hosts in memory, each a step-by-step agent: serve's
  scale-set mode without Docker); see docs/scale-sets.md.
- AWS: ``imds`` (IMDSv2 with the hop limit), ``iam_policy`` (an IAM policy evaluator),
  ``sqs_event_source`` (Lambda's SQS event source mapping), ``moto_dynamodb_speed`` (moto's
  DynamoDB answers without its slow generic serializer), ``moto_kms_speed`` (KMS key material
  made once per key spec, not per key), ``botocore_client_speed`` (one client class per
  service, not one per client, and one model loader per process).
- Pulumi: ``pulumi_stack_speed`` (resource registrations under the mocks without the Python
  stack the engine's diagnostics would get).
- ``ledger``: the job ledger folded over a list of events, as a reference.
"""
