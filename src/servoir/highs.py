"""A quiet HiGHS solver instance (highspy), shared by every module that solves LPs or MIPs.

highspy prints a banner on stdout the first time a ``Highs`` object is created; with
``--json`` output that would corrupt the JSON, so the banner is sent to /dev/null at the file
descriptor level (it is written by C++, not through ``sys.stdout``). highspy is imported here,
on first use only: it is not on the start-up path of ``servoir simulate``.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def quiet_highs(**options: Any) -> Any:
    """A new ``highspy.Highs`` with output off and ``options`` set (``setOptionValue``)."""
    import highspy  # deferred: only the programs that need a solver pay for it

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    for key, value in options.items():
        h.setOptionValue(key, value)
    return h
