"""Guarantee checks of the routing family: ``CHECKS[name](family, policy_name)`` raises on failure.

Merged into ``GUARANTEE_CHECKS`` in ``test_policies.py``; each guarantee a routing policy declares
in ``info.guarantees`` beyond the shared ones needs its check here.
"""

from __future__ import annotations

from collections.abc import Callable

CHECKS: dict[str, Callable[[str, str], None]] = {}
