"""Helpers shared by the benchmark scripts: timing, machine facts, result files.

Every benchmark writes ``benchmarks/results/<name>.json`` (machine-readable,
all raw timings) and ``benchmarks/results/<name>.md`` (a short table for
humans), both stating the command that produced them and the machine.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    """The shared real-ECG folder (``ECGSOUP_SHARED_DATA`` or ``../shared/data``)."""
    default = REPO_ROOT.parent / "shared" / "data"
    path = Path(os.environ.get("ECGSOUP_SHARED_DATA", default))
    if not (path / "README.md").exists():
        sys.exit(f"Real ECG data not found at {path}; set ECGSOUP_SHARED_DATA to the data folder.")
    return path


def timed(fn, *args, **kwargs):
    """``(seconds, result)`` of one call, wall clock (``time.perf_counter``)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def summary(seconds: list[float]) -> dict:
    """Median, min, max and all raw values of a list of timings."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "runs_s": list(seconds),
    }


def machine_info() -> dict:
    """Facts that timings depend on: CPU, threads, library versions, load."""
    import numpy
    import sklearn
    import torch

    import ecgsoup

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "ecgsoup": ecgsoup.__version__,
    }
    if hasattr(os, "getloadavg"):
        # Other jobs on the machine slow everything down; say how busy it was.
        info["load_average_1_5_15min"] = [round(v, 2) for v in os.getloadavg()]
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "num_threads", "version")}
            for pool in threadpool_info()
        ]
    except ImportError:
        pass
    return info


def command_line() -> str:
    """How this benchmark was started, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO_ROOT)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def write_results(name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return both paths.

    ``payload`` gets ``command``, ``date`` and ``machine`` added; the markdown
    gets the same facts appended under "Run".
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": command_line(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **payload,
    }
    json_path = RESULTS_DIR / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    machine = payload["machine"]
    facts = [
        f"- command: `{payload['command']}`",
        f"- date: {payload['date']}",
        f"- machine: {machine['platform']}, {machine['cpu_count']} CPUs, "
        f"torch {machine['torch']} ({machine['torch_threads']} threads), "
        f"scikit-learn {machine['scikit_learn']}, GPU: {machine['cuda'] or 'none'}",
    ]
    if "load_average_1_5_15min" in machine:
        facts.append(f"- load average at the end (1/5/15 min): {machine['load_average_1_5_15min']}")
    md_path = RESULTS_DIR / f"{name}.md"
    md_path.write_text(markdown.rstrip() + "\n\n## Run\n\n" + "\n".join(facts) + "\n")
    return json_path, md_path
