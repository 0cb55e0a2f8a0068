"""Printing benchmark figures in the one format DESIGN.md fixes."""

from __future__ import annotations

import operator

OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


def report(name: str, value: float, goal: str | None = None, unit: str = "") -> bool:
    """`bench <name> <value> goal <op><target> PASS|MISS` (or a plain figure with no goal)."""
    if goal is None:
        print(f"bench {name} {value:.3f}{unit}", flush=True)
        return True
    op = next(o for o in sorted(OPS, key=len, reverse=True) if goal.startswith(o))
    target = float(goal[len(op) :])
    ok = OPS[op](value, target)
    print(
        f"bench {name} {value:.3f} goal {op}{goal[len(op) :]} {'PASS' if ok else 'MISS'}",
        flush=True,
    )
    return ok
