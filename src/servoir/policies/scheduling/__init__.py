"""Scheduling policies; importing this package registers the built-ins."""

from servoir.policies.scheduling.a_max import AMax
from servoir.policies.scheduling.a_min import AMin
from servoir.policies.scheduling.fcfs import FCFS
from servoir.policies.scheduling.gsa import GSA
from servoir.policies.scheduling.mc_sf import MCSF
from servoir.policies.scheduling.priority import Priority
from servoir.policies.scheduling.sjf import SJF
from servoir.policies.scheduling.sorted_f import SortedF
from servoir.policies.scheduling.vtc import VTC

__all__ = ["FCFS", "GSA", "MCSF", "VTC", "AMax", "AMin", "Priority", "SJF", "SortedF"]
