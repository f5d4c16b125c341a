"""Start-up (issue 25 item 5): how long until edgeintel answers.

* ``startup: import edgeintel.scenario``: seconds to import the scenario module in a fresh
  interpreter (median of 5), and which heavy packages it pulled in (none expected);
* ``startup: first line of edgeintel run``: seconds from starting ``edgeintel run default``
  to its first line of output (median of 5; those runs are stopped after the first line),
  plus one full run of the default scenario whose total time is a detail.

Each figure is measured in a fresh subprocess with one thread (OMP_NUM_THREADS=1), so the
interpreter start and every import are counted as a user would see them.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import target

__all__ = ["run"]

REPEATS = 5
HEAVY = ("torch", "onnxruntime", "scipy.stats", "dp_accounting", "cryptography")
_EDGEINTEL = Path(sys.executable).with_name("edgeintel")

_IMPORT_PROBE = """
import sys, time
t0 = time.perf_counter()
import edgeintel.scenario
dt = time.perf_counter() - t0
print(dt, ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("COLUMNS", None)
    return env


def import_time() -> tuple[float, list[str]]:
    """Seconds to ``import edgeintel.scenario`` in a fresh interpreter; heavy modules loaded."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    ).stdout.split()
    return float(out[0]), (out[1].split(",") if len(out) > 1 else [])


def run_default(runs_dir: Path, run_id: str, full: bool) -> dict[str, Any]:
    """Start ``edgeintel run default``; time its first line, then stop it unless ``full``."""
    cmd = [str(_EDGEINTEL), "run", "default", "--runs-dir", str(runs_dir), "--run-id", run_id]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,  # its own process group: stopped as a whole below
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_s = time.perf_counter() - t0
    if not full:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
        return {"first_line_s": first_s, "first_line": first.strip()}
    rest = proc.stdout.read()
    rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"edgeintel run default failed (exit {rc}):\n{first}{rest[-2000:]}")
    return {"first_line_s": first_s, "total_s": time.perf_counter() - t0, "first_line": first}


def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    imports = [import_time() for _ in range(REPEATS)]
    import_s = statistics.median(t for t, _ in imports)
    heavy = sorted({m for _, mods in imports for m in mods})
    with tempfile.TemporaryDirectory(prefix="edgeintel-startup-") as tmp:
        firsts = [run_default(Path(tmp), f"first-{i}", full=False) for i in range(REPEATS)]
        full = run_default(Path(tmp), "full", full=True)
    first_s = statistics.median(r["first_line_s"] for r in firsts)
    targets = [
        target("startup: import edgeintel.scenario", import_s, "<=", 1.0, "s"),
        target("startup: first line of edgeintel run", first_s, "<=", 3.0, "s"),
    ]
    details = {
        "import_s": [round(t, 3) for t, _ in imports],
        "heavy_modules_after_import": heavy,
        "first_line_s": [round(r["first_line_s"], 3) for r in firsts],
        "first_line": firsts[0]["first_line"],
        "default_run_total_s": round(full["total_s"], 2),
        "default_run_first_line_s": round(full["first_line_s"], 3),
        "repeats": REPEATS,
        "threads": 1,
    }
    return targets, details
