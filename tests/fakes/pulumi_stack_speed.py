"""Pulumi's SDK walks and encodes the Python stack at every resource registration, for the
engine's diagnostics (where in the program a resource was declared): about a quarter of the
time a program takes under the mocks, which discard it (``MockMonitor`` reads neither
``sourcePosition`` nor ``stackTrace``). ``install`` sends an empty stack instead. What the
program registers, and everything the mocks record, is unchanged.
"""

from __future__ import annotations

from pulumi.runtime import resource
from pulumi.runtime.proto import source_pb2

_original = resource._get_stack_trace


def _empty_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


def install() -> None:
    assert _original.__name__ == "_get_stack_trace", "Pulumi's stack capture changed"
    resource._get_stack_trace = _empty_stack_trace
