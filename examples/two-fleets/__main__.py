"""Two runner fleets in one stack, built with the runner-fleet library: x86_64 runners with
the default labels and arm64 runners, each with its own GitHub App (an App has one webhook
URL, and each fleet's webhook function must receive its own deliveries)."""

from __future__ import annotations

import pulumi

from infra import FleetSettings, GithubAppSecrets, RunnerFleet, RunnerFleetArgs, parse_config

config = pulumi.Config()
org = config.require("githubScope")

# The labels keep the fleets apart: a job goes to the fleet whose labels include all of its
# runs-on labels, so `[self-hosted, linux, dind]` is x86_64 work and `[self-hosted, linux,
# arm64]` arm64 work.
FLEETS: dict[str, FleetSettings] = {
    "x64": FleetSettings(githubScope=org, fleetName="x64", maxSize=20),
    "arm64": FleetSettings(
        githubScope=org,
        fleetName="arm64",
        architecture="arm64",
        runnerLabels=["self-hosted", "linux", "arm64"],
        vpcCidr="10.65.0.0/16",
        maxSize=10,
    ),
}


def github_app(fleet: str) -> GithubAppSecrets:
    """The fleet's GitHub App: `pulumi config set --secret <fleet>:githubAppId ...`."""
    app = pulumi.Config(fleet)
    return GithubAppSecrets(
        app_id=app.require_secret("githubAppId"),
        private_key=app.require_secret("githubAppPrivateKey"),
        webhook_secret=app.require_secret("githubWebhookSecret"),
    )


fleets = {
    name: RunnerFleet(
        name, RunnerFleetArgs(config=parse_config(settings), github_app=github_app(name))
    )
    for name, settings in FLEETS.items()
}
for name, fleet in fleets.items():
    pulumi.export(name, fleet.outputs)
