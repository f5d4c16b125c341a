"""Benchmark of the main job: wall time of `edgeintel run` on each shipped scenario.

Target (foundation issue): the default scenario's run completes in under 3 minutes
on a 2-core machine, after set-up. Writes benchmarks/results/run.json.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console

from _common import target, write_results
from edgeintel.pipeline import run_pipeline
from edgeintel.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    details: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "scenarios").glob("*.yaml")):
            sc = load_scenario(path)
            t0 = time.perf_counter()
            res = run_pipeline(
                sc,
                runs_dir=tmp,
                run_id=path.stem,
                console=Console(quiet=True),
                show_progress=False,
                scenario_file=str(path),
            )
            wall = time.perf_counter() - t0
            details[path.stem] = {
                "wall_s": round(wall, 2),
                "stage_s": res.results["timings_s"],
                "accuracy_onnx": res.results.get("evaluation", {}).get("accuracy_onnx"),
            }
            print(f"{path.stem}: {wall:.1f} s")
    targets = [
        target(
            "default scenario run time",
            details["default"]["wall_s"],  # type: ignore[arg-type]
            "<=",
            180,
            "s",
        )
    ]
    write_results("run", targets, details)


if __name__ == "__main__":
    main()
