"""Side-by-side comparisons against the peers users would otherwise pick (issue 25).

Each comparison lives in its own module ``benchmarks/_peers_<topic>.py`` exposing
``run() -> tuple[list[dict], dict]`` (targets made with ``_common.target``, each name
starting with ``"<topic>: "``, and details). This script imports every such module in name
order, runs it, and writes ``benchmarks/results/peers.json``; a run of some topics keeps the
other topics' targets and details from the file (each topic's details carry their own
``created`` time). Peers that install beside the project's pins come from the ``peers``
extra; the serving peers (Triton, KServe, MLServer), whose pins cannot, each run from a
venv of their own in ``.venv-peers/`` (``make peers-venvs``). ``make bench`` builds
both; nothing is installed at run time. A comparison whose peer is missing raises: a
missing peer is a failed benchmark, not a skipped target.

Usage: python benchmarks/bench_peers.py [TOPIC ...]   (e.g. ``cache fl``; default: all)
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, write_results

HERE = Path(__file__).resolve().parent


def topics() -> list[str]:
    """Every ``_peers_<topic>.py`` beside this script, in name order."""
    return sorted(p.stem.removeprefix("_peers_") for p in HERE.glob("_peers_*.py"))


def main(argv: list[str]) -> None:
    chosen = argv or topics()
    unknown = sorted(set(chosen) - set(topics()))
    if unknown:
        raise SystemExit(f"unknown topic(s) {unknown}; expected some of {topics()}")
    targets: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    old = RESULTS_DIR / "peers.json"
    if old.exists() and set(chosen) != set(topics()):
        prev = json.loads(old.read_text())
        targets = [t for t in prev["targets"] if t["name"].split(":")[0] not in chosen]
        details = {k: v for k, v in prev["details"].items() if k not in chosen}
    for topic in chosen:
        print(f"== peers: {topic}", flush=True)
        t0 = time.perf_counter()
        mod = importlib.import_module(f"_peers_{topic}")
        t, d = mod.run()
        bad = [x["name"] for x in t if not x["name"].startswith(f"{topic}: ")]
        if bad:
            raise SystemExit(f"_peers_{topic}: target names must start with '{topic}: ': {bad}")
        targets.extend(t)
        details[topic] = {
            **d,
            "wall_s": round(time.perf_counter() - t0, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    write_results("peers", targets, details)


if __name__ == "__main__":
    main(sys.argv[1:])
