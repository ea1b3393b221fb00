"""One configuration model for the fleet, shared by the Pulumi program (infra/), the control
plane functions (fleet/aws) and the local fleet (fleet/local).

- ``rules``: what AWS and GitHub accept (name rules, limits, patterns), written once;
- ``fields``: the settings the three share, as pydantic types carrying their rule and message;
- ``names``: ``ResourceNames``, every AWS name a fleet derives, checked as a whole;
- ``stack``: ``FleetConfig``, the stack settings (``parse_config``, ``ConfigError``), with
  ``stack_checks`` (settings taken together) and ``typed`` (``FleetSettings``);
- ``settings``: settings read from the environment with pydantic-settings: the functions'
  ``ControlPlaneSettings`` and the local fleet's ``GitHubAppSettings``;
- ``problems``: pydantic's errors as (key, message) pairs a person can act on.

Pure (no pulumi, no AWS call): it ships in the functions' package with the rest of core.
"""
