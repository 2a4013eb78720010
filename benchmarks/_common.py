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
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
# How busy the machine was when the benchmark started (recorded beside the end value).
LOAD_AT_START = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
# Other processes using more than this fraction of all CPUs, on average over
# the run, make a timing benchmark "noisy": it then refuses to write results.
BUSY_SHARE = 0.10
ALLOW_NOISY_ENV = "ECGSOUP_BENCH_ALLOW_NOISY"


def _process_ticks() -> float:
    """CPU ticks of this process, its waited-for children, and its live descendants.

    Worker processes (joblib/loky, Dask, the benchmarks' subprocesses) are the
    benchmark's own work, not another job's.
    """
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # fields[1] is the parent pid; [11:15] utime, stime, cutime, cstime.
        table[int(entry)] = (int(fields[1]), [float(v) for v in fields[11:15]])
    me = os.getpid()
    total = sum(table[me][1]) if me in table else 0.0
    for pid, (parent, ticks) in table.items():
        seen = set()
        while parent not in (0, 1, me) and parent in table and parent not in seen:
            seen.add(parent)
            parent = table[parent][0]
        if pid != me and parent == me:
            total += sum(ticks)  # a live descendant, with its own children that have exited
    return total


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy ticks of all CPUs, all ticks, ticks of this benchmark's processes)."""
    try:
        with open("/proc/stat") as handle:
            fields = [float(v) for v in handle.readline().split()[1:]]
        own = _process_ticks()
    except OSError:
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)
    return busy, sum(fields), own


_START_SNAPSHOT = _cpu_snapshot()


def _other_share(before, after) -> float | None:
    if before is None or after is None:
        return None
    # /proc/stat counts in USER_HZ (100 per second on Linux), like the per-process times.
    return max(0.0, ((after[0] - before[0]) - (after[2] - before[2])) / max(after[1] - before[1], 1e-9))


def other_cpu_share(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs used by *other* processes over the next ``seconds``, or None."""
    before = _cpu_snapshot()
    time.sleep(seconds)
    return _other_share(before, _cpu_snapshot())


def quiet_status() -> dict:
    """How quiet the machine was: load before/now, other processes' CPU share over the run.

    ``other_processes_cpu_share_during_run`` is measured from the start of the
    benchmark process to now (whatever ran beside the benchmark, averaged);
    ``noisy`` is set when it exceeds ``BUSY_SHARE`` of all CPUs.
    """
    now = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    during = _other_share(_START_SNAPSHOT, _cpu_snapshot())
    share = other_cpu_share()
    noisy = bool(during is not None and during > BUSY_SHARE)
    return {"load_at_start_1_5_15min": LOAD_AT_START, "load_at_end_1_5_15min": now,
            "other_processes_cpu_share_during_run": None if during is None else round(during, 3),
            "other_processes_cpu_share": None if share is None else round(share, 3),
            "busy_threshold": BUSY_SHARE, "noisy": noisy}


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


# Instruction sets that decide which kernels torch runs (bfloat16 above all).
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


def cpu_model() -> dict:
    """The processor's model name and the instruction sets among ``_CPU_FLAGS`` (Linux)."""
    name, flags = None, []
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and name is None:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    flags = [flag for flag in _CPU_FLAGS if flag in present]
                    break
    except OSError:
        pass
    return {"model": name or platform.processor() or platform.machine(), "flags": flags}


def machine_info() -> dict:
    """Facts that timings depend on: CPU, threads, library versions, load."""
    import numpy
    import sklearn
    import torch

    import ecgsoup

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
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
    return " ".join(["python", shlex.quote(str(script)), *(shlex.quote(_portable(a)) for a in sys.argv[1:])])


def _portable(argument: str) -> str:
    """An absolute path as the repository-relative path, or as ``.../<name>`` outside it.

    Results travel: a folder of the machine that ran the benchmark means nothing elsewhere.
    """
    if not argument.startswith("/"):
        return argument
    path = Path(argument)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return f".../{path.name}"


def write_results(name: str, payload: dict, markdown: str, *, timing: bool = True) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return both paths.

    ``payload`` gets ``command``, ``date``, ``machine`` and ``quiet`` (see
    :func:`quiet_status`) added; the markdown gets the same facts appended
    under "Run".  A ``timing`` benchmark taken while other processes were
    busy is refused (exit status 2; the previous results are kept and the new
    ones go to ``<name>.noisy.{json,md}``, marked noisy) unless
    ``ECGSOUP_BENCH_ALLOW_NOISY=1`` is set; then they are written as usual
    with a "noisy" banner at the top of the table.
    """
    quiet = payload.get("quiet") or quiet_status()
    refused = timing and quiet["noisy"] and os.environ.get(ALLOW_NOISY_ENV) != "1"
    if refused:
        # Kept beside the real results (never over them), so a long run is not lost.
        name = f"{name}.noisy"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": command_line(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **payload,
        "quiet": quiet,
    }
    json_path = RESULTS_DIR / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    machine = payload["machine"]
    facts = [
        f"- command: `{payload['command']}`",
        f"- date: {payload['date']}",
        f"- machine: {machine['platform']}, {machine['cpu']['model']} "
        f"({', '.join(machine['cpu']['flags']) or 'none of ' + ', '.join(_CPU_FLAGS)}), {machine['cpu_count']} CPUs, "
        f"torch {machine['torch']} ({machine['torch_threads']} threads), "
        f"scikit-learn {machine['scikit_learn']}, GPU: {machine['cuda'] or 'none'}",
    ]
    if "load_average_1_5_15min" in machine:
        facts.append(f"- load average at the start / end (1/5/15 min): {LOAD_AT_START} / "
                     f"{machine['load_average_1_5_15min']}")
    facts.append(
        f"- other processes' CPU share: {quiet['other_processes_cpu_share_during_run']} during the run, "
        f"{quiet['other_processes_cpu_share']} at the end (threshold {quiet['busy_threshold']})"
        + (" -- **noisy: the machine was busy; timings are not comparable**" if quiet["noisy"] else " (quiet)")
    )
    banner = ""
    if timing and quiet["noisy"]:
        banner = (f"> **Noisy run.** Other processes used {quiet['other_processes_cpu_share_during_run']:.0%} of "
                  "the CPUs while this ran; these timings are not comparable with quiet runs.\n\n")
    md_path = RESULTS_DIR / f"{name}.md"
    md_path.write_text(banner + markdown.rstrip() + "\n\n## Run\n\n" + "\n".join(facts) + "\n")
    if refused:
        sys.stderr.write(
            f"{name[: -len('.noisy')]}: not written: other processes used "
            f"{quiet['other_processes_cpu_share_during_run']:.0%} of the CPUs during the run (threshold "
            f"{BUSY_SHARE:.0%}), so the timings are not comparable; kept as {md_path.name} instead. "
            f"Stop the other jobs and rerun, or set {ALLOW_NOISY_ENV}=1 to write them marked noisy.\n"
        )
        sys.exit(2)
    return json_path, md_path
