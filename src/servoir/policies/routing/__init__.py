"""Routing policies; importing this package registers the built-ins."""

from servoir.policies.routing.jsq import JoinShortestQueue
from servoir.policies.routing.least_outstanding import LeastOutstandingTokens
from servoir.policies.routing.power_of_two import PowerOfTwo
from servoir.policies.routing.round_robin import RoundRobin

__all__ = ["JoinShortestQueue", "LeastOutstandingTokens", "PowerOfTwo", "RoundRobin"]
