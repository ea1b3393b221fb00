"""A client of GitHub's runner scale sets (the Actions service behind ``actions/scaleset``).

- ``models``: the service's requests and answers as typed (pydantic) models, in its own
  field names and casing;
- ``messages``: a queue message's batch body parsed into typed job messages (pure);
- ``errors``: typed errors (``JobStillRunning``, ``AgentNotFound``, ``AgentExists``,
  ``SessionConflict``, ``QueueTokenExpired``), all ``GitHubError``s;
- ``target``: where a scale set lives (organization, repository or enterprise) and the
  config URL GitHub expects for it (pure);
- ``auth``: registration token -> runner registration (``RemoteAuth``) -> admin token,
  refreshed before the admin JWT's ``exp``;
- ``service``: the admin calls (runner groups, scale sets, JIT configs, runners);
- ``session``: a message session (create, refresh, delete), the long poll, message
  deletion and job acquisition.

Every HTTP call goes through ``fleet.core.github.client.GitHubClient``: a timeout on every
call, bounded retries with backoff on 5xx and rate limits, ``sleep`` and clocks injected.
"""
