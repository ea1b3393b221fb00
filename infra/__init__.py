"""Pulumi program for runner fleets on AWS: components only, nothing is created at import."""
