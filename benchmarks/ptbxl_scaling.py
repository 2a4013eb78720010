"""What the whole PTB-XL protocol costs at 1.8 k, 5 k, 10 k and 21.8 k records, phase by phase.

**Timing only.** Only 1,819 real PTB-XL records exist in the shared data (the z-scored
subset, 1,625 of them labelled).  The first size is that subset as it is; the larger ones
are made by resampling its labelled records (each record keeps its fold and its
statements), so that :func:`ecgsoup.benchmark.ptbxl` runs the whole protocol on them (six
tasks, both probes, the bootstrap, the figures).  Their AUCs mean nothing: no AUC of any
size is printed or saved, and the figures and tables the protocol writes go to a
temporary folder that is deleted once timed.

How the copies are made (``--copies``):

* ``perturbed`` (default): each copy is its source record circularly shifted by up to
  ``--shift`` seconds and with Gaussian noise of ``--noise`` standard deviations added
  (the subset is z-scored per lead), so every copy is embedded afresh;
* ``exact``: bit-identical copies.  The embedder runs each distinct record once and
  finds the copies in its per-record cache, so the embed phase of the resampled sizes
  times cache look-ups, not forward passes.  The forward cost of N records is then
  N x (models) / (records per second measured on the real records), reported beside it.
  For a machine too slow to embed 21,799 records twice within the time at hand.

For every size the script records the seconds of each phase: read, preprocess, embed
(the model and its random-weights twin), clinical features, the probes of each task
(logistic and MLP), the bootstrap, the figures and tables, and what is left; the peak
memory; the load and the other processes' CPU share during that size.  It fits a growth
exponent per phase (least squares of log seconds on log records) and extrapolates to the
sizes that did not run.  Each size runs in its own process, and the results files are
rewritten as each size finishes, so a stopped run keeps the sizes it finished.

``--embedding`` measures records per second of the tiny (bundled) and base (random
weights: speed does not depend on their values) models in float32, and in bfloat16 where the processor has bf16 instructions, on real
records, and projects the time to embed 21,799 records.

Run::

    python benchmarks/ptbxl_scaling.py [--sizes real 5000 10000 21799] [--work DIR]
        [--model default] [--copies perturbed|exact] [--embedding] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quiet_status, shared_data_path, write_results  # noqa: E402

NAME = "ptbxl_scaling"
FULL_SIZE = 21_799  # records in the PTB-XL download
DEFAULT_SIZES = ("real", "5000", "10000", str(FULL_SIZE))
QUICK_SIZES = ("60", "120")
TIMING_ONLY = (
    "TIMING ONLY: the sizes above the real subset are resampled copies of its records; "
    "no AUC of any size is reported or saved."
)
PHASES = ("read", "preprocess", "embed", "features", "probes", "bootstrap", "plots_write", "other")
PHASE_NAMES = {
    "read": "read the records",
    "preprocess": "preprocess (per model)",
    "embed": "embed (model + random-weights twin)",
    "features": "clinical features",
    "probes": "probes (all tasks, both probes)",
    "bootstrap": "bootstrap intervals and claims",
    "plots_write": "figures and tables",
    "other": "other (tasks, layer views, PPA)",
    "total": "total",
}
# The probe lines ptbxl() prints, read when its timings have no per-task entry.
_TASK_LINE = re.compile(r"^task (\w+):")
_PROBE_LINE = re.compile(r"^\s+(\w+) probe: \d+ representations in ([0-9.]+) s")


# --- the resampled folders ------------------------------------------------------------------


def _read_subset(source: Path):
    xs, ids, folds, meta = [], [], [], None
    for shard in sorted(source.glob("*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            xs.append(data["x"])
            ids.append(data["ecg_id"])
            folds.append(data["strat_fold"])
            meta = {key: data[key] for key in ("fs", "lead_names", "units") if key in data.files}
    return np.concatenate(xs), np.concatenate(ids), np.concatenate(folds), meta


def _save_npz(path: Path, **arrays) -> None:
    """Like ``np.savez_compressed`` (the subset's format, read by ``np.load``), at zlib level 1.

    Decompression costs the same at every level; level 1 writes 21,799 records in a
    fraction of the default level's time.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def make_resampled_subset(source, n_records: int, folder, *, copies="perturbed", shift_s=0.2, noise=0.02,
                          seed=0, shard_size=4096) -> Path:
    """A folder in the z-scored subset's layout with ``n_records`` labelled records, for timing only.

    Records are drawn from the labelled records of ``source`` (each at least once
    before any is repeated, when ``n_records`` is larger); a copy keeps its source's
    fold and statements under a new ``ecg_id``.  ``perturbed`` copies are shifted
    circularly by up to ``shift_s`` seconds and get Gaussian noise of ``noise``
    standard deviations; ``exact`` copies are bit-identical.
    """
    if copies not in ("perturbed", "exact"):
        raise ValueError(f"copies={copies!r}; use 'perturbed' or 'exact'.")
    source, folder = Path(source), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = pd.read_csv(source / "labels.csv")
    X, ecg_id, fold, meta = _read_subset(source)
    row_of = {int(i): r for r, i in enumerate(ecg_id)}
    labelled = np.array([row_of[int(i)] for i in labels["ecg_id"]])
    rng = np.random.default_rng(seed)
    if n_records <= len(labelled):
        label_rows = rng.choice(len(labelled), size=n_records, replace=False)
    else:
        label_rows = np.concatenate([rng.permutation(len(labelled)),
                                     rng.integers(0, len(labelled), n_records - len(labelled))])
    rows = labelled[label_rows]
    new_ids = np.arange(1, n_records + 1, dtype=np.int32)
    rate = float(meta["fs"])
    max_shift = int(round(shift_s * rate))
    scale = 1000.0 if np.issubdtype(X.dtype, np.integer) else 1.0  # int16 = z x 1000
    for number, start in enumerate(range(0, n_records, shard_size)):
        stop = min(start + shard_size, n_records)
        x = X[rows[start:stop]]
        if copies == "perturbed":
            shifts = rng.integers(-max_shift, max_shift + 1, size=len(x))
            time_index = (np.arange(x.shape[1])[None, :] - shifts[:, None]) % x.shape[1]
            x = np.take_along_axis(x, time_index[:, :, None], axis=1).astype(np.float32)
            x += rng.normal(0.0, noise * scale, size=x.shape).astype(np.float32)
            x = np.clip(np.rint(x), np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(X.dtype)
        _save_npz(folder / f"resampled_{number:03d}.npz", x=x, ecg_id=new_ids[start:stop],
                  strat_fold=fold[rows[start:stop]], **meta)  # fmt: skip
    table = labels.iloc[label_rows].copy()
    table["ecg_id"] = new_ids
    table.to_csv(folder / "labels.csv", index=False)
    (folder / "TIMING_ONLY.txt").write_text(
        f"{TIMING_ONLY}\n{n_records} records resampled from {source} ({copies} copies"
        + (f", shifts up to {shift_s} s, noise {noise} sd" if copies == "perturbed" else "") + f", seed {seed}).\n"
    )
    return folder


# --- one size -------------------------------------------------------------------------------


class _PeakRSS:
    """The largest resident set size seen while the block runs (sampled every 0.2 s), in MiB."""

    def __enter__(self):
        self.peak, self.marks, self._stop = 0.0, [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            self._stop.wait(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())

    def mark(self, phase: str) -> None:
        """Note the resident size now and the peak so far, at the end of ``phase``."""
        now = _rss_mib()
        self.peak = max(self.peak, now)
        self.marks.append({"after": phase, "rss_mib": round(now, 1), "peak_mib": round(self.peak, 1)})


# The protocol's progress lines that end a phase, and the phase they end.
_PHASE_ENDS = ((re.compile(r".*labelled records used"), "read"), (re.compile(r"embedded \d+ records"), "embed"),
               (re.compile(r"clinical features \("), "features"), (re.compile(r"task \S+, \S+ probe:"), "probes"))


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Tee(io.TextIOBase):
    """Writes to the real stdout (the log) and keeps a copy to read the probe lines from.

    With ``memory``, a progress line that ends a phase marks the memory there.
    """

    def __init__(self, stream, memory=None):
        self.stream, self.copy, self.memory = stream, io.StringIO(), memory

    def write(self, text):
        self.stream.write(text)
        self.stream.flush()
        if self.memory is not None:
            for line in text.splitlines():
                phase = next((name for pattern, name in _PHASE_ENDS if pattern.match(line)), None)
                if phase is not None:
                    self.memory.mark(phase)
        return self.copy.write(text)


def _probe_seconds(printed: str) -> dict:
    """``{task: {probe: seconds}}`` from ptbxl()'s progress lines (rounded to the second there)."""
    found, task = {}, None
    for line in printed.splitlines():
        if match := _TASK_LINE.match(line):
            task = match.group(1)
        elif (match := _PROBE_LINE.match(line)) and task is not None:
            found.setdefault(task, {})[match.group(1)] = float(match.group(2))
    return found


def run_size(root, *, model="default", cache=None, precision="auto", n_jobs=None, protocol=None) -> dict:
    """Run the whole protocol on the folder ``root`` and return seconds per phase (no scores).

    ``protocol`` holds further :func:`ecgsoup.benchmark.ptbxl` arguments (tasks,
    probes, n_bootstrap...).  The returned dictionary has the phase seconds, the
    per-task probe seconds, the record counts and the peak memory; the result
    tables (AUCs) are only written to a temporary folder, to time the writing, and
    deleted with it.
    """
    from ecgsoup.backbones import load_backbone
    from ecgsoup.benchmark import (
        load_ptbxl_benchmark_data,
        plot_ptbxl_summary,
        ptbxl,
        write_ptbxl_results,
    )
    from ecgsoup.hardware import resolve_precision
    from ecgsoup.preprocessing import ECGPreprocessor

    protocol = dict(protocol or {})
    device = protocol.pop("device", "cpu")
    precision = resolve_precision(precision, device)
    models = 2 if protocol.get("random_baseline", True) else 1
    with _PeakRSS() as memory:
        tee = _Tee(sys.stdout, memory)
        start = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            result = ptbxl(root, model=model, out=None, cache=cache, precision=precision, device=device,
                           n_jobs=n_jobs, verbose=True, **protocol)  # fmt: skip
        protocol_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory(prefix="ptbxl-scaling-") as scratch:
            start = time.perf_counter()
            write_ptbxl_results(result, scratch)
            plot_ptbxl_summary(result, Path(scratch) / "summary.png")
            write_s = time.perf_counter() - start
        timings = {k: v for k, v in result.timings.items() if k.endswith("_s") or k == "probes"}
        del result
        measured_here = []
        if "read_s" not in timings or "preprocess_s" not in timings:
            # Older protocol code times neither: both are measured again, on their own, after the run.
            measured_here = ["read", "preprocess"]
            start = time.perf_counter()
            data = load_ptbxl_benchmark_data(root)
            timings.setdefault("read_s", time.perf_counter() - start)
            labelled = np.flatnonzero(data.labelled)
            start = time.perf_counter()
            pre = ECGPreprocessor(sampling_rate=data.sampling_rate, lead_names=data.lead_names,
                                  model=load_backbone(model))  # fmt: skip
            pre.fit_transform(data.X[labelled])
            timings.setdefault("preprocess_s", (time.perf_counter() - start) * models)
            del data, pre
    phases = {"read": float(timings["read_s"]), "preprocess": float(timings["preprocess_s"])}
    if "embed_s" in timings:
        phases["embed"] = float(timings["embed_s"] + timings.get("embed_random_s", 0.0))
    else:
        phases["embed"] = max(0.0, float(timings.get("embedding_s", 0.0)) - phases["preprocess"])
    for phase in ("features", "probes", "bootstrap"):
        phases[phase] = float(timings.get(f"{phase}_s", 0.0))
    per_task = timings["probes"] if isinstance(timings.get("probes"), dict) else _probe_seconds(tee.copy.getvalue())
    if not phases["probes"] and per_task:
        phases["probes"] = float(sum(sum(p.values()) for p in per_task.values()))
    phases["plots_write"] = write_s
    inside = protocol_s - sum(phases[p] for p in ("read", "preprocess", "embed", "features", "probes", "bootstrap"))
    phases["other"] = max(0.0, inside)
    n_used, n_read, data_mib = _counts(tee.copy.getvalue(), root)
    return {"n_records": n_used, "n_read": n_read, "precision": precision, "models_embedded": models,
            "phases_s": phases, "total_s": protocol_s + write_s, "probes_per_task_s": per_task,
            "measured_apart": measured_here, "ptbxl_timings_s": {k: v for k, v in timings.items() if k != "probes"},
            "peak_rss_mib": round(memory.peak, 1), "signal_array_mib": round(data_mib, 1),
            "memory_by_phase": _last_marks(memory.marks)}  # fmt: skip


def _last_marks(marks: list[dict]) -> dict:
    """``{phase: (resident MiB, peak MiB so far)}`` at the last progress line of each phase."""
    return {mark["after"]: [mark["rss_mib"], mark["peak_mib"]] for mark in marks}


def _counts(printed: str, root) -> tuple[int, int, float]:
    """(labelled records the protocol used, records in the folder, MiB of float32 signals it held)."""
    used = re.search(r": (\d+) labelled records used", printed)
    n_read, samples = 0, 0
    for shard in Path(root).glob("*.npz"):
        with zipfile.ZipFile(shard) as archive, archive.open("x.npy") as member:  # the header only
            major, _ = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape = read_header(member)[0]
        n_read += shape[0]
        samples += int(np.prod(shape))
    return int(used.group(1)) if used else n_read, n_read, samples * 4 / 2**20


# --- growth ---------------------------------------------------------------------------------


def growth(runs: list[dict], sizes=(FULL_SIZE,)) -> dict:
    """Per phase: the exponent b of seconds ~ a * records**b (log-log least squares) and projections.

    Needs two sizes or more with a positive time for that phase; otherwise ``None``.
    """
    n = np.array([r["n_records"] for r in runs], dtype=float)
    out = {}
    for phase in (*PHASES, "total"):
        seconds = np.array([r["total_s"] if phase == "total" else r["phases_s"][phase] for r in runs], float)
        keep = seconds > 0
        if keep.sum() < 2 or len(set(n[keep])) < 2:
            out[phase] = None
            continue
        slope, intercept = np.polyfit(np.log(n[keep]), np.log(seconds[keep]), 1)
        out[phase] = {"exponent": round(float(slope), 3),
                      "projected_s": {str(s): round(float(np.exp(intercept) * s**slope), 1) for s in sizes}}
    return out


# --- embedding throughput ---------------------------------------------------------------------


def _real_records(n: int):
    root = shared_data_path() / "ptbxl_zscored_subset"
    with np.load(root / "ptbxl_zscored_250hz_val.npz", allow_pickle=False) as data:
        X = data["x"][:n].astype(np.float32) / 1000.0
        return X, float(data["fs"]), tuple(str(v) for v in data["lead_names"])


def embedding_rates(plan=None, *, batch_size=16) -> dict:
    """Records per second of the embedder on real records, and the time for 21,799 records.

    ``plan`` maps ``(model, precision)`` to a record count; the time covers the
    forward passes only (records preprocessed beforehand, no cache).
    """
    import warnings

    from ecgsoup.backbones import load_backbone
    from ecgsoup.embedding import LayerwiseEmbedder
    from ecgsoup.hardware import cpu_has_bf16, resolve_precision
    from ecgsoup.preprocessing import ECGPreprocessor

    if plan is None:
        plan = {("default", "float32"): 128, ("random:ecgsoup-100hz-base", "float32"): 16}
        if cpu_has_bf16():  # elsewhere torch emulates bfloat16, many times slower, and "auto" never picks it
            plan.update({("default", "bfloat16"): 128, ("random:ecgsoup-100hz-base", "bfloat16"): 16})
    X, rate, leads = _real_records(max(plan.values()))
    rows = []
    for (model, precision), n in plan.items():
        encoder = load_backbone(model)
        Xp = ECGPreprocessor(sampling_rate=rate, lead_names=leads, model=encoder).fit_transform(X[:n])
        LayerwiseEmbedder(model=encoder, precision=precision, batch_size=batch_size).fit_transform(Xp[:1])  # warm-up
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            LayerwiseEmbedder(model=encoder, precision=precision, batch_size=batch_size).fit_transform(Xp)
            seconds = time.perf_counter() - start
        size = "tiny" if model == "default" else model.rsplit("-", 1)[-1]
        rows.append({"model": model, "size": size, "precision": precision, "records": n, "seconds": round(seconds, 2),
                     "records_per_s": round(n / seconds, 3),
                     "projected_s_21799_one_model": round(FULL_SIZE / (n / seconds), 0),
                     "projected_s_21799_model_and_twin": round(2 * FULL_SIZE / (n / seconds), 0)})  # fmt: skip
        print(f"embedding {size} {precision}: {n / seconds:.2f} records/s ({n} records)", flush=True)
    return {"rows": rows, "cpu_has_bf16": cpu_has_bf16(), "auto_precision_cpu": resolve_precision("auto", "cpu"),
            "batch_size": batch_size}  # fmt: skip


# --- results --------------------------------------------------------------------------------


def _fmt(seconds) -> str:
    if seconds is None:
        return ""
    return f"{seconds:,.0f}" if seconds >= 10 else f"{seconds:.1f}"


def markdown(payload: dict) -> str:
    """The results page: the timing-only statement, phase table, exponents, projections, embedding rates."""
    runs, fit = payload["runs"], payload.get("growth") or {}
    lines = ["# PTB-XL protocol at scale: seconds per phase", "", f"**{TIMING_ONLY}**", "",
             payload["what"], ""]  # fmt: skip
    if runs:
        head = "| phase | " + " | ".join(f"{r['label']} ({r['n_records']:,})" for r in runs) + " | growth exponent |"
        lines += ["## Seconds per phase", "", head, "|---|" + "---:|" * (len(runs) + 1)]
        for phase in (*PHASES, "total"):
            cells = [_fmt(r["total_s"] if phase == "total" else r["phases_s"][phase]) for r in runs]
            b = fit.get(phase)
            lines.append(f"| {PHASE_NAMES[phase]} | " + " | ".join(cells) + f" | {'' if b is None else b['exponent']} |")
        lines += ["", "Probe fit seconds per task (logistic / MLP), as the protocol reports them: with `--n-jobs 2` they "
                  "are summed over the worker processes, so a row can exceed its share of the probe wall time:", "",
                  "| task | " + " | ".join(r["label"] for r in runs) + " |", "|---|" + "---:|" * len(runs)]
        tasks = list(dict.fromkeys(t for r in runs for t in r["probes_per_task_s"]))
        for task in tasks:
            cells = []
            for r in runs:
                probes = r["probes_per_task_s"].get(task, {})
                cells.append(" / ".join(_fmt(probes[p]) for p in ("logistic", "mlp") if p in probes))
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines += ["", "| size | records read | peak memory (MiB) | signals in memory (MiB) | load (1 min) at start / end "
                  "| other processes' CPU share |", "|---|---:|---:|---:|---|---:|"]  # fmt: skip
        for r in runs:
            q = r["quiet"]
            lines.append(f"| {r['label']} | {r['n_read']:,} | {r['peak_rss_mib']:,.0f} | {r['signal_array_mib']:,.0f} | "
                         f"{q['load_at_start_1_5_15min'][0]} / {q['load_at_end_1_5_15min'][0]} | "
                         f"{q['other_processes_cpu_share_during_run']} |")  # fmt: skip
        traced = [r for r in runs if r.get("memory_by_phase")]
        if traced:
            phases = [p for p in ("read", "embed", "features", "probes") if any(p in r["memory_by_phase"] for r in traced)]
            lines += ["", "Resident memory of the protocol's process at the end of each phase, and the peak so far "
                      "(MiB; the probe fits of `--n-jobs 2` run in worker processes, not counted here):", "",
                      "| size | " + " | ".join(f"after {p}" for p in phases) + " |", "|---|" + "---:|" * len(phases)]
            for r in traced:
                cells = [("{:,.0f} (peak {:,.0f})".format(*r["memory_by_phase"][p]) if p in r["memory_by_phase"] else "")
                         for p in phases]  # fmt: skip
                lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    projection = payload.get("projection")
    if projection:
        lines += ["", "## Projection to 21,799 records", "", projection["text"], "",
                  "| model | precision | records/s (measured on) | embed (s) | rest of the protocol (s) | total (s) "
                  "| total (min) |", "|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for row in projection["rows"]:
            lines.append(f"| {row['size']} | {row['precision']} | {row['records_per_s']:.2f} ({row['rate_measured_on']}) "
                         f"| {_fmt(row['embed_s'])} | {_fmt(row['rest_s'])} | {_fmt(row['total_s'])} | "
                         f"{row['total_s'] / 60:.1f} |")  # fmt: skip
    run = payload.get("embedding_pass")
    if run:
        rate = embedding_pass_rate(payload)
        q = run["quiet"]
        lines += ["", "## Embedding pass over the real subset", "",
                  f"{run['n_records']:,} labelled records x {run['models_embedded']} models (the bundled model and "
                  f"its random twin), {run['precision']}, no cache: {_fmt(run['phases_s']['embed'])} s, "
                  f"{rate:.2f} records/s; preprocessing {_fmt(run['phases_s']['preprocess'])} s; peak memory "
                  f"{run['peak_rss_mib']:,.0f} MiB with {run['signal_array_mib']:,.0f} MiB of signals held; load "
                  f"(1 min) {q['load_at_start_1_5_15min'][0]} at the start, {q['load_at_end_1_5_15min'][0]} at the "
                  f"end; other processes' CPU share {q['other_processes_cpu_share_during_run']} ({run['date']})."]
    embedding = payload.get("embedding")
    if embedding:
        lines += ["", "## Embedding throughput", "",
                  f"Real records (z-scored subset, fold 9), batch {embedding['batch_size']}, no cache. This CPU "
                  f"{'has' if embedding['cpu_has_bf16'] else 'has no'} bf16 instructions, so `precision=\"auto\"` "
                  f"means {embedding['auto_precision_cpu']} here. Measured {embedding.get('date', '')}, load (1 min) "
                  f"{(embedding.get('quiet') or {}).get('load_at_end_1_5_15min', ['?'])[0]}, other processes' CPU "
                  f"share {(embedding.get('quiet') or {}).get('other_processes_cpu_share_during_run', '?')}.", "",
                  "| model | precision | records | records/s | 21,799 records, one model | model + random twin |",
                  "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for row in embedding["rows"]:
            lines.append(f"| {row['size']} | {row['precision']} | {row['records']} | {row['records_per_s']:.2f} | "
                         f"{row['projected_s_21799_one_model'] / 60:.0f} min | "
                         f"{row['projected_s_21799_model_and_twin'] / 60:.0f} min |")  # fmt: skip
    if payload.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in payload["notes"]]
    lines += ["", f"**{TIMING_ONLY}**"]
    return "\n".join(lines) + "\n"


def embedding_pass_rate(payload: dict) -> float | None:
    """Records per second of the timed pass over the real subset (model and twin), if it ran."""
    run = payload.get("embedding_pass")
    if not run or run["phases_s"]["embed"] <= 0:
        return None
    return run["n_records"] * run["models_embedded"] / run["phases_s"]["embed"]


def projection(runs: list[dict], fit: dict, embedding: dict | None, width_factor_base=4.0,
               pass_rate: float | None = None, pass_precision: str = "float32") -> dict | None:
    """21,799 records for the tiny and the base model: measured or fitted phases, embedding from its rate."""
    if not runs:
        return None
    full = next((r for r in runs if r["n_records"] == FULL_SIZE), None)

    def at_full(phase):
        if full is not None:
            return full["total_s"] if phase == "total" else full["phases_s"][phase]
        b = fit.get(phase)
        return None if b is None else b["projected_s"][str(FULL_SIZE)]

    rest = {p: at_full(p) for p in PHASES if p != "embed"}
    if any(v is None for v in rest.values()):
        return None
    rows, source = [], "measured at 21,799 records" if full is not None else "extrapolated with the fitted exponents"
    rates = [(r["size"], r["precision"], r["records_per_s"], f"{r['records']} records")
             for r in (embedding or {}).get("rows", [])]  # fmt: skip
    if pass_rate is not None:
        rates.insert(0, ("tiny", pass_precision, pass_rate, "the pass over the real subset"))
    for size, precision, rate, measured_on in rates:
        embed_s = 2 * FULL_SIZE / rate
        rest_s = sum(rest.values()) + (rest["probes"] * (width_factor_base - 1) if size == "base" else 0.0)
        rows.append({"size": size, "precision": precision, "records_per_s": round(rate, 3),
                     "rate_measured_on": measured_on, "embed_s": embed_s, "rest_s": rest_s,
                     "total_s": embed_s + rest_s})  # fmt: skip
    text = (f"Every phase but the embedding {source} with the bundled (tiny) model; the embedding is 2 x 21,799 "
            "records (the model and its random twin, each record once) at the measured records per second. For "
            f"the base model (width 768 against 192) the probe phase is taken as {width_factor_base:g} times the "
            "tiny model's (the probes' cost grows with the number of columns): an assumption, not a measurement.")
    return {"rows": rows, "text": text, "rest_s": rest, "source": source}


DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "results" / "speed.md"
DOCS_START, DOCS_END = "% ptbxl_scaling: generated from benchmarks/results/ptbxl_scaling.json, start", \
    "% ptbxl_scaling: end"


def docs_section(payload: dict) -> str:
    """The speed page's PTB-XL section: phase table, exponents, projection, from the results JSON."""
    runs, fit = payload["runs"], payload.get("growth") or {}
    lines = ["## PTB-XL at full scale: the whole protocol", "",
             f"**Timing only.** Only 1,819 real PTB-XL records are at hand (1,625 labelled); the larger sizes are "
             "resampled copies of them, made to time the protocol and nothing else, so no AUC is reported from "
             f"them. {payload['what']}", ""]  # fmt: skip
    machine = payload.get("machine") or {}
    cpu = machine.get("cpu") or {}
    if cpu:
        lines += [f"Measured on {cpu.get('model', '?')} ({', '.join(cpu.get('flags') or []) or 'no AVX-512'}, "
                  f"{machine.get('cpu_count', '?')} CPUs, torch {machine.get('torch', '?')}): "
                  + ("not the processor of the tables above; it has" if any("bf16" in f for f in cpu.get("flags") or [])
                     else "not the processor of the tables above, and without") + " bfloat16 instructions.", ""]  # fmt: skip
    if runs:
        lines += [f"Seconds per phase ({_machine_state(runs)}; the load per size is in the results file):", "",
                  "| phase | " + " | ".join(f"{r['label']} ({r['n_records']:,})" for r in runs) + " | growth exponent |",
                  "|---|" + "---:|" * (len(runs) + 1)]  # fmt: skip
        for phase in (*PHASES, "total"):
            cells = [_fmt(r["total_s"] if phase == "total" else r["phases_s"][phase]) for r in runs]
            b = fit.get(phase)
            lines.append(f"| {PHASE_NAMES[phase]} | " + " | ".join(cells) + f" | {'' if b is None else b['exponent']} |")
        lines += ["", "The growth exponent b fits seconds = a x records^b by least squares on the log-log scale over the "
                  "sizes above; 1 means linear."]  # fmt: skip
        lines += _largest_size_lines(runs[-1])
    projection = payload.get("projection")
    if projection:
        lines += ["", "Projected for the full PTB-XL (21,799 records), with the forward passes at the records per "
                  "second measured on this machine:", "",
                  "| model | precision | records/s | embed | rest of the protocol | total |", "|---|---|---:|---:|---:|---:|"]
        for row in projection["rows"]:
            lines.append(f"| {row['size']} | {row['precision']} | {row['records_per_s']:.2f} | "
                         f"{row['embed_s'] / 60:.0f} min | {row['rest_s'] / 60:.0f} min | {row['total_s'] / 60:.0f} min |")
        lines += ["", projection["text"]]
        best = min(projection["rows"], key=lambda row: row["total_s"]) if projection["rows"] else None
        if best is not None:
            verdict = "within" if best["total_s"] <= 30 * 60 else "far outside" if best["total_s"] > 60 * 60 else "outside"
            lines += ["", f"On this machine the whole protocol for 21,799 records is {verdict} a 30-minute budget: "
                      f"{best['total_s'] / 60:,.0f} min at best ({best['size']}, {best['precision']}), of which "
                      f"{best['embed_s'] / 60:,.0f} min embedding and {best['rest_s'] / 60:,.0f} min the rest."]
            probes_full = (projection.get("rest_s") or {}).get("probes")
            share = _mlp_share(runs[-1]) if runs else None
            if probes_full and share:
                lines[-1] += (f" Of the projected {probes_full / 60:,.0f} min of probes, about {share * probes_full / 60:,.0f} "
                              f"min is the MLP probe ({share:.0%} of the fits' time at {runs[-1]['n_records']:,} records); "
                              "`--probes logistic` leaves it out.")
    if payload.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in payload["notes"]]
    lines += ["", f"Written by `{payload.get('command', 'python benchmarks/ptbxl_scaling.py')}` on {payload.get('date', '?')}; "
              "the full tables are in `benchmarks/results/ptbxl_scaling.md`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _machine_state(runs: list[dict]) -> str:
    """'a quiet machine ...' or '... shared with other jobs', from the runs' load records."""
    shares = [r["quiet"].get("other_processes_cpu_share_during_run") for r in runs if r.get("quiet")]
    shares = [v for v in shares if v is not None]
    if not shares:
        return "2 CPU cores"
    if any(r["quiet"].get("noisy") for r in runs if r.get("quiet")):
        return f"2 CPU cores shared with other jobs, which used up to {max(shares):.0%} of them"
    return f"2 CPU cores, quiet: other processes used at most {max(shares):.0%} of them"


def _mlp_share(run: dict) -> float | None:
    """The MLP probe's share of the probe fits' seconds in one run, or None without both probes."""
    per_task = run.get("probes_per_task_s") or {}
    sums = {probe: sum(t.get(probe, 0.0) for t in per_task.values()) for probe in ("logistic", "mlp")}
    return sums["mlp"] / (sums["logistic"] + sums["mlp"]) if all(sums.values()) else None


def _largest_size_lines(run: dict) -> list[str]:
    """Where the time of the largest size went, and its memory by phase."""
    total = run["total_s"]
    parts = sorted(run["phases_s"].items(), key=lambda item: -item[1])
    shown = ", ".join(f"{PHASE_NAMES[p]} {s / 60:.1f} min ({s / total:.0%})" for p, s in parts if s / total >= 0.02)
    lines = ["", f"At {run['n_records']:,} records the protocol took {total / 60:.1f} min: {shown}."]
    share = _mlp_share(run)
    if share is not None:
        lines[-1] += (f" Of the probe fits' CPU time, {share:.0%} went to the MLP head (batches of 64 records, up to "
                      "100 epochs per fit) and the rest to the logistic regressions.")
    memory = run.get("memory_by_phase") or {}
    if memory:
        lines[-1] += (" The protocol's process held " + ", ".join(f"{v[0]:,.0f} MiB after {p}" for p, v in memory.items())
                      + f" (peak {run['peak_rss_mib']:,.0f} MiB, of which {run['signal_array_mib']:,.0f} MiB the "
                      "signals as read); the probe fits run in worker processes of their own.")
    return lines


def render_docs(results_json=None, page=DOCS_PAGE) -> None:
    """Put the PTB-XL section, made from the results JSON, between its markers on the speed page."""
    from _common import RESULTS_DIR

    payload = json.loads(Path(results_json or RESULTS_DIR / f"{NAME}.json").read_text())
    text = Path(page).read_text()
    block = f"{DOCS_START}\n\n{docs_section(payload)}\n{DOCS_END}\n"
    if DOCS_START in text and DOCS_END in text:
        head, rest = text.split(DOCS_START, 1)
        text = head + block + rest.split(DOCS_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    Path(page).write_text(text)


def _what(args, protocol: dict) -> str:
    from ecgsoup.hardware import resolve_precision

    copies = {"perturbed": f"circularly shifted by up to {args.shift} s, with Gaussian noise of {args.noise} sd",
              "exact": "bit-identical (each distinct record is embedded once; the copies are found in the embedding "
                       "cache, so the embed phase of those sizes is cache look-ups)"}[args.copies]
    tasks = protocol.get("tasks", "all six tasks")
    probes = " and ".join(protocol.get("probes", ["logistic", "mlp"]))
    return (f"Model `{args.model}`, precision {resolve_precision(args.precision, 'cpu')} ({args.precision}), the "
            f"protocol of `ecgsoup.benchmark.ptbxl` ({tasks if isinstance(tasks, str) else ', '.join(tasks)}, "
            f"{probes} probes, every layer, PPA and PMA, random-weights twin, clinical features and hybrid, "
            f"{protocol['n_bootstrap']} bootstrap resamples, figures and tables). Sizes: the real "
            "z-scored subset as it is (1,819 records, its 1,625 labelled ones used), then labelled records resampled "
            f"with their folds and statements, copies {copies}. Record counts in the headers are the records the "
            "protocol used; each size ran in its own process"
            + (", all sizes reading one embedding cache of the real records filled beforehand; the time of the "
               "forward passes comes from the records per second measured on real records"
               if args.copies == "exact" else ", with a fresh embedding cache") + ".")


# --- command line ---------------------------------------------------------------------------


def _size_label(size: str) -> str:
    if size == "real":
        return "1.8k real"
    return f"{int(size) / 1000:g}k resampled" if int(size) >= 1000 else f"{size} resampled"


def _one_size(args) -> None:
    """Child process: one size, its result as JSON on the last line of stdout."""
    protocol = json.loads(args.protocol)
    cache = Path(args.work) / ("cache" if args.copies == "exact" else f"cache-{args.one_size}")
    result = run_size(args.root, model=args.model, cache=cache, precision=args.precision, n_jobs=args.n_jobs,
                      protocol=protocol)  # fmt: skip
    result["quiet"] = quiet_status()
    print("RESULT " + json.dumps(result), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=None, help="'real' and/or record counts (default: "
                        + " ".join(DEFAULT_SIZES) + ")")
    parser.add_argument("--work", default=None, help="folder for the resampled records and caches (default: a "
                        "folder under the system's temporary folder)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--precision", default="auto", help="'auto': bfloat16 where the CPU has bf16 instructions")
    parser.add_argument("--copies", choices=["perturbed", "exact"], default="perturbed")
    parser.add_argument("--shift", type=float, default=0.2, help="largest time shift of a copy, seconds")
    parser.add_argument("--noise", type=float, default=0.02, help="noise added to a copy, in standard deviations")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=None, help="processes for the clinical features")
    parser.add_argument("--embedding", action="store_true", help="also measure the embedding throughput")
    parser.add_argument("--embedding-only", action="store_true", help="only measure the embedding throughput")
    parser.add_argument("--embed-pass", action="store_true",
                        help="only embed the real subset (model and twin) into WORK/cache, timed, with a minimal "
                        "protocol; --copies exact runs then find every record there")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two tasks, logistic probe: a smoke test")
    parser.add_argument("--name", default=NAME, help="results file name")
    parser.add_argument("--render-docs", action="store_true",
                        help="only rewrite the PTB-XL section of docs/results/speed.md from the results JSON")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite results/<name>.md from results/<name>.json (no run)")
    parser.add_argument("--one-size", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_size:
        _one_size(args)
        return
    if args.render_docs:
        render_docs()
        return
    if args.render:
        render_results(args.name)
        return
    print(TIMING_ONLY, flush=True)
    work = Path(args.work or Path(tempfile.gettempdir()) / "ptbxl-scaling")
    work.mkdir(parents=True, exist_ok=True)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    protocol = {"n_bootstrap": 50 if args.quick else args.bootstrap}
    if args.quick:
        protocol.update(tasks=["super", "rhythm"], probes=["logistic"])
    source = shared_data_path() / "ptbxl_zscored_subset"
    payload = {"timing_only": TIMING_ONLY, "what": _what(args, protocol), "model": args.model, "copies": args.copies,
               "protocol": protocol, "sizes_requested": list(sizes), "runs": [], "growth": None,
               "notes": []}  # fmt: skip
    rates = work / "embedding_rates.json"
    if args.embedding or args.embedding_only:
        payload["embedding"] = embedding_rates()
        payload["embedding"].update(quiet=quiet_status(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        rates.write_text(json.dumps(payload["embedding"], indent=2) + "\n")
    elif rates.exists():  # measured by an earlier --embedding-only run with the same --work
        payload["embedding"] = json.loads(rates.read_text())
    if args.embedding_only:
        return
    if args.embed_pass:
        minimal = {"tasks": ["super"], "probes": ["logistic"], "Cs": [0.1], "n_bootstrap": 10, "features": False,
                   "pma": False}  # fmt: skip
        run = run_size(source, model=args.model, cache=work / "cache", precision=args.precision,
                       protocol=minimal)  # fmt: skip
        run.update(quiet=quiet_status(), protocol=minimal, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        (work / "embed_pass.json").write_text(json.dumps(run, indent=2) + "\n")
        print(f"embedded {run['n_records']} x {run['models_embedded']} records in {run['phases_s']['embed']:.0f} s "
              f"({run['n_records'] * run['models_embedded'] / max(run['phases_s']['embed'], 1e-9):.2f} records/s)")
        return
    if (work / "embed_pass.json").exists():
        payload["embedding_pass"] = json.loads((work / "embed_pass.json").read_text())
    for size in sizes:
        if size == "real":
            root = source
        else:
            root = work / f"records-{size}-{args.copies}"
            if not (root / "labels.csv").exists():
                start = time.perf_counter()
                make_resampled_subset(source, int(size), root, copies=args.copies, shift_s=args.shift,
                                      noise=args.noise)  # fmt: skip
                print(f"made {size} resampled records in {time.perf_counter() - start:.0f} s", flush=True)
        print(f"== {_size_label(size)}: {root}", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--one-size", size, "--root", str(root),
                   "--work", str(work), "--model", args.model, "--precision", args.precision,
                   "--copies", args.copies, "--protocol", json.dumps(protocol)]  # fmt: skip
        if args.n_jobs is not None:
            command += ["--n-jobs", str(args.n_jobs)]
        printed = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as child:
            for line in child.stdout:  # passed on as it comes: the log shows the progress
                printed.append(line)
                if not line.startswith("RESULT "):
                    sys.stdout.write(line)
                    sys.stdout.flush()
        result_line = next((line for line in printed if line.startswith("RESULT ")), None)
        if child.returncode != 0 or result_line is None:
            payload["notes"].append(f"size {size} stopped with exit status {child.returncode}; not in the tables")
            _checkpoint(args, payload)
            continue
        run = json.loads(result_line[len("RESULT "):])
        run.update(label=_size_label(size), size=size, copies="real" if size == "real" else args.copies)
        payload["runs"].append(run)
        payload["runs"].sort(key=lambda r: r["n_records"])
        print(f"   {run['n_records']} records: {run['total_s']:.0f} s in all; "
              + ", ".join(f"{p} {s:.0f} s" for p, s in run["phases_s"].items()), flush=True)
        _checkpoint(args, payload)


def render_results(name: str = NAME) -> None:
    """Rewrite ``results/<name>.md`` from its JSON (tables, notes and the run facts)."""
    from _common import RESULTS_DIR

    payload = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    quiet, machine = payload["quiet"], payload["machine"]
    text = markdown(payload)
    if quiet["noisy"]:
        text = (f"> **Noisy run.** Other processes used {quiet['other_processes_cpu_share_during_run']:.0%} of the "
                "CPUs while this ran; these timings are not comparable with quiet runs.\n\n" + text)
    facts = [f"- command: `{payload['command']}`", f"- date: {payload['date']}",
             f"- machine: {machine['platform']}, {machine['cpu']['model']} ({', '.join(machine['cpu']['flags'])}), "
             f"{machine['cpu_count']} CPUs, torch {machine['torch']} ({machine['torch_threads']} threads), "
             f"scikit-learn {machine['scikit_learn']}, GPU: {machine['cuda'] or 'none'}",
             f"- load average at the start / end (1/5/15 min): {quiet['load_at_start_1_5_15min']} / "
             f"{quiet['load_at_end_1_5_15min']}",
             f"- other processes' CPU share: {quiet['other_processes_cpu_share_during_run']} during the run "
             f"(threshold {quiet['busy_threshold']})"]  # fmt: skip
    (RESULTS_DIR / f"{name}.md").write_text(text.rstrip() + "\n\n## Run\n\n" + "\n".join(facts) + "\n")


def _checkpoint(args, payload: dict) -> None:
    """Rewrite the results files with what has finished so far."""
    sizes = sorted({FULL_SIZE, *(int(s) for s in payload["sizes_requested"] if s != "real")})
    payload["growth"] = growth(payload["runs"], sizes) if len(payload["runs"]) >= 2 else None
    pass_precision = (payload.get("embedding_pass") or {}).get("precision", "float32")
    payload["projection"] = projection(payload["runs"], payload["growth"] or {}, payload.get("embedding"),
                                       pass_rate=embedding_pass_rate(payload), pass_precision=pass_precision)
    quiet = quiet_status()
    payload["quiet"] = quiet
    text = markdown(payload)
    if quiet["noisy"]:
        text = (f"> **Noisy run.** Other processes used {quiet['other_processes_cpu_share_during_run']:.0%} of the "
                "CPUs while this ran; these timings are not comparable with quiet runs.\n\n" + text)
    # The per-size load and CPU share are in the tables; the run is written whatever the load.
    write_results(args.name, payload, text, timing=False)


if __name__ == "__main__":
    main()
