"""Routing policies; importing this package registers the built-ins."""

from servoir.policies.routing.bf_io import BfIo
from servoir.policies.routing.bf_io_greedy import BfIoGreedy
from servoir.policies.routing.jsq import JoinShortestQueue
from servoir.policies.routing.least_outstanding import LeastOutstandingTokens
from servoir.policies.routing.power_of_two import PowerOfTwo
from servoir.policies.routing.prefix_aware import PrefixAware
from servoir.policies.routing.rank_table import RankTable
from servoir.policies.routing.round_robin import RoundRobin
from servoir.policies.routing.vllm_score import VllmScore

__all__ = ["BfIo", "BfIoGreedy", "JoinShortestQueue", "LeastOutstandingTokens", "PowerOfTwo",
           "PrefixAware", "RankTable", "RoundRobin", "VllmScore"]
