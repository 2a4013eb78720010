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
# How busy the machine was when the benchmark started (recorded beside the end value).
LOAD_AT_START = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
# A 1-minute load above this on the machine (beyond the benchmark itself) marks timings "noisy".
BUSY_LOAD = 0.5


def other_cpu_share(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs used by *other* processes over ``seconds`` (Linux /proc), or None."""
    def snapshot():
        with open("/proc/stat") as handle:
            fields = [float(v) for v in handle.readline().split()[1:]]
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)
        with open(f"/proc/{os.getpid()}/stat") as handle:
            own = handle.read().rsplit(")", 1)[1].split()
        return busy, sum(fields), float(own[11]) + float(own[12])

    try:
        b0, t0, o0 = snapshot()
        time.sleep(seconds)
        b1, t1, o1 = snapshot()
    except OSError:
        return None
    # /proc/stat counts in USER_HZ (100 per second on Linux), like the per-process times.
    return max(0.0, ((b1 - b0) - (o1 - o0)) / max(t1 - t0, 1e-9))


def quiet_status() -> dict:
    """Load before/now and other processes' CPU share; ``noisy`` when someone else was busy."""
    now = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    share = other_cpu_share()
    noisy = bool((share is not None and share > 0.10) or (LOAD_AT_START and LOAD_AT_START[0] > BUSY_LOAD + 0.5))
    return {"load_at_start_1_5_15min": LOAD_AT_START, "load_at_end_1_5_15min": now,
            "other_processes_cpu_share": None if share is None else round(share, 3), "noisy": noisy}


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
        facts.append(f"- load average at the start / end (1/5/15 min): {LOAD_AT_START} / "
                     f"{machine['load_average_1_5_15min']}")
    quiet = payload.get("quiet")
    if quiet:
        facts.append(f"- other processes' CPU share at the end: {quiet['other_processes_cpu_share']}"
                     + (" -- **noisy: the machine was busy; timings are not comparable**" if quiet["noisy"] else " (quiet)"))
    md_path = RESULTS_DIR / f"{name}.md"
    md_path.write_text(markdown.rstrip() + "\n\n## Run\n\n" + "\n".join(facts) + "\n")
    return json_path, md_path
