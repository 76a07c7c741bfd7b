"""The discrete-event simulator: instances with event skipping, a cluster and its router."""

from servoir.sim.cluster import Cluster
from servoir.sim.instance import EngineParams, Instance
from servoir.sim.metrics import collect

__all__ = ["Cluster", "EngineParams", "Instance", "collect"]
