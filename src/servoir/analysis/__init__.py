"""Analysis: closed-form queueing results and simulation output analysis.

``queueing`` holds the golden references (M/M/1, M/M/c Erlang C, M/G/1 Pollaczek-Khinchine,
M/D/1, M/G/1-PS, Little's law); ``stats`` holds confidence intervals (i.i.d., replications,
batch means), quantiles, summaries and time averages of step functions. Neither imports scipy
at module load.
"""

from __future__ import annotations

from servoir.analysis.queueing import (
    little_l,
    md1_sojourn,
    md1_wait,
    mg1_sojourn_pk,
    mg1_wait_pk,
    mm1_ps_sojourn_given_size,
    mm1_sojourn,
    mm1_wait,
    mmc_erlang_c,
    mmc_sojourn,
    mmc_wait,
)
from servoir.analysis.stats import (
    batch_means_ci,
    integral,
    mean_ci,
    quantile,
    replication_ci,
    summarize,
    t_critical,
    time_average,
)

__all__ = [
    "batch_means_ci",
    "integral",
    "little_l",
    "md1_sojourn",
    "md1_wait",
    "mean_ci",
    "mg1_sojourn_pk",
    "mg1_wait_pk",
    "mm1_ps_sojourn_given_size",
    "mm1_sojourn",
    "mm1_wait",
    "mmc_erlang_c",
    "mmc_sojourn",
    "mmc_wait",
    "quantile",
    "replication_ci",
    "summarize",
    "t_critical",
    "time_average",
]
