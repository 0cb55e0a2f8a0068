"""`make bench [BENCH=<domain>]`: one line per figure, ratios measured side by side.

bench <name> <value> goal <op><target> PASS|MISS
"""

from __future__ import annotations

import importlib
import sys

DOMAINS = ["mailbox", "user_activity", "game_timelines"]


def main(argv: list[str]) -> int:
    chosen = argv or DOMAINS
    unknown = [d for d in chosen if d not in DOMAINS]
    if unknown:
        print(f"unknown benchmark domain(s): {', '.join(unknown)}; choose from {DOMAINS}")
        return 2
    for domain in chosen:
        importlib.import_module(f"benchmarks.{domain}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
