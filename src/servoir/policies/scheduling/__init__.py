"""Scheduling policies; importing this package registers the built-ins."""

from servoir.policies.scheduling.fcfs import FCFS

__all__ = ["FCFS"]
