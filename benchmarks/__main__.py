"""`make bench [BENCH=<domain>]`: one line per figure, ratios measured side by side.

bench <name> <value> goal <op><target> PASS|MISS

Several domains run one after the other, each in a fresh interpreter: a child process
starts with the peak RSS of the process that spawned it (Linux keeps it across exec), so a
domain that measures its children's memory must not follow one that grew large.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

DOMAINS = ["platform", "alerts", "mailbox", "user_activity", "game_timelines", "tickets"]


def main(argv: list[str]) -> int:
    chosen = argv or DOMAINS
    unknown = [d for d in chosen if d not in DOMAINS]
    if unknown:
        print(f"unknown benchmark domain(s): {', '.join(unknown)}; choose from {DOMAINS}")
        return 2
    if len(chosen) == 1:
        importlib.import_module(f"benchmarks.{chosen[0]}").main()
        return 0
    failed = [
        domain
        for domain in chosen
        if subprocess.run([sys.executable, "-m", "benchmarks", domain]).returncode != 0
    ]
    if failed:
        print(f"benchmark domain(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
