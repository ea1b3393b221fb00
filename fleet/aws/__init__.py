"""The AWS control plane: Lambda handlers, one adapter per AWS service, fleet observation and
settings. Imports ``fleet.core``, never ``fleet.local``; shipped in the Lambda package."""
