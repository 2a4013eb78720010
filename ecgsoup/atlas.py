"""The per-layer atlas: several frozen encoders through one PTB-XL protocol, side by side.

:func:`atlas` runs ``ecgsoup.benchmark.ptbxl`` once per model on the same
records, folds and probe, and combines the runs into

* one table: for each model and task, the layer chosen on validation, the last
  layer, the fusion over all layers (PPA where the layers share one space,
  every layer balanced otherwise), the same architecture with random weights,
  and the clinical features (once, they do not depend on the model);
* paired bootstrap intervals for "layer chosen on validation minus last layer"
  per model and task (the same resamples of the scored records for both);
* one figure: per task, every model's layer curve against relative depth
  (0 = the first layer, 1 = the last), so that a 5-stage CNN and a 12-block
  transformer share one axis.

Each model's run is saved in ``out/models/<model>/`` as soon as it finishes, with
the settings it was run with; running the same command again reuses every
finished run whose settings match, so an interrupted atlas continues with the
next model.  The embeddings and the clinical features are cached in
``out/cache`` and shared by the runs.

A model given as ``random:<name>`` is itself a random-weights architecture
baseline: its run has no second random twin.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgsoup.benchmark import (
    DEFAULT_CS,
    json_records,
    ptbxl,
    read_ptbxl_results,
    result_cell,
    write_ptbxl_results,
)
from ecgsoup.hardware import resolve_precision
from ecgsoup.tasks import PTBXL_TASK_NAMES, PTBXL_TASKS

__all__ = ["AtlasResult", "AtlasRun", "atlas", "plot_atlas"]

_CHOSEN = "best layer (chosen on validation)"
_RANDOM = "random weights (layer chosen on validation)"
_FUSIONS = ("PPA", "all layers (balanced)")
_RUN_FORMAT = 1


@dataclass
class AtlasRun:
    """One model of the atlas: what it is, and its PTB-XL result."""

    model: str
    family: str
    weights: str
    contract: str
    n_layers: int
    result: object
    reused: bool = False

    @property
    def label(self) -> str:
        return f"{self.model} ({self.family}, {self.weights})"


@dataclass
class AtlasResult:
    """What :func:`atlas` measured.

    Attributes
    ----------
    runs : list of AtlasRun
    layers : pandas.DataFrame
        One row per model, task, probe and layer: ``relative_depth`` (0 first,
        1 last layer), ``auc`` and its bootstrap interval.
    table : pandas.DataFrame
        One row per model, task, probe and summary representation (``chosen
        layer``, ``last layer``, ``fusion``, ``random twin``; ``clinical
        features`` once, under the model ``-``).
    claims : pandas.DataFrame
        "chosen layer - last layer" per model, task and probe, with the paired
        bootstrap interval and a verdict.
    scored_fold : int
    selection : str
    source : str
    figure : Path or None
    """

    runs: list
    layers: pd.DataFrame
    table: pd.DataFrame
    claims: pd.DataFrame
    scored_fold: int
    selection: str
    source: str
    n_bootstrap: int
    figure: Path | None = None
    timings: dict = field(default_factory=dict)

    def to_markdown(self, probe: str = "logistic") -> str:
        """The combined table for one probe: macro AUC [95 % interval] (what was chosen)."""
        sub = self.table[self.table["probe"] == probe]
        tasks = list(dict.fromkeys(sub["task"]))
        lines = ["| model | representation | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
        for (model, rep), rows in sub.groupby(["model", "representation"], sort=False):
            cells = []
            for task in tasks:
                cells.append(result_cell(rows[rows["task"] == task]))
            lines.append(f"| {model} | {rep} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def claims_markdown(self, probe: str = "logistic") -> str:
        sub = self.claims[self.claims["probe"] == probe]
        lines = ["| model | task | chosen layer - last layer [95 % interval] | verdict |", "|---|---|---|---|"]
        for r in sub.itertuples():
            lines.append(f"| {r.model} | {r.task} | {r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | "
                         f"{r.verdict} |")  # fmt: skip
        return "\n".join(lines)

    def models_markdown(self) -> str:
        lines = ["| model | family | weights | layers | input contract |", "|---|---|---|---|---|"]
        for run in self.runs:
            lines.append(f"| {run.model} | {run.family} | {run.weights} | {run.n_layers} | {run.contract} |")
        return "\n".join(lines)

    def summary(self) -> str:
        """A plain-text report: the models, the scored fold, the table and the paired claims."""
        parts = [
            f"Per-layer atlas on {self.source}. Scored fold: {self.scored_fold} (train folds 1-8); "
            f"choices {self.selection}.",
            "Macro ROC AUC, ECG-Soup rule (a class absent from the scored fold counts 0.5), "
            f"[bootstrap 95 % interval, {self.n_bootstrap} resamples of the scored records].",
            "",
            self.models_markdown(),
        ]
        for probe in dict.fromkeys(self.table["probe"]):
            parts += ["", f"Probe: {probe}", self.to_markdown(probe), "", self.claims_markdown(probe)]
        return "\n".join(parts)


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(model)).strip("_")[:80] or "model"


def _describe(model: str):
    """(family, weights, contract, n_layers) of a model, from the module ecgsoup loads for it."""
    from ecgsoup.backbones import load_backbone, parse_model

    module = load_backbone(model)
    random = parse_model(model).kind == "random" if isinstance(model, str) else False
    sha = (getattr(module, "metadata", None) or {}).get("sha256")
    weights = "random weights" if random or not sha else f"sha256 {sha[:12]}"
    return module.family, weights, module.contract.describe(), len(module.layers), random


def atlas(
    root,
    models,
    *,
    out,
    tasks=tuple(PTBXL_TASKS),
    probes=("logistic",),
    Cs=DEFAULT_CS,
    n_bootstrap=1000,
    max_records=None,
    rate=100,
    scp_statements=None,
    features=True,
    pma=False,
    random_state=0,
    batch_size=16,
    precision="float32",
    device="cpu",
    n_jobs=None,
    figure=True,
    verbose=True,
) -> AtlasResult:
    """Run the PTB-XL protocol for several models and combine the runs (see the module docstring).

    Parameters
    ----------
    root : str or Path
        A PTB-XL download or the z-scored subset folder.
    models : sequence of str
        ``model=`` values: ``"default"``, model folders, ``<family>:<path>``
        original checkpoints, ``random:<name>`` architecture baselines.
    out : str or Path
        Folder for ``atlas.{json,md,csv}``, ``atlas.png``, each model's run
        (``models/<model>/``) and the shared cache.
    tasks, probes, Cs, n_bootstrap, max_records, rate, scp_statements, features, random_state
        As for ``ecgsoup.benchmark.ptbxl``.
    pma : bool, default=False
        Add PMA rows to every run (slow; off by default for the atlas).
    batch_size, precision, device, n_jobs
        As for ``ecgsoup.benchmark.ptbxl``.
    figure : bool, default=True
        Write ``atlas.png``.
    verbose : bool, default=True
        A progress line per model and task.

    Returns
    -------
    result : AtlasResult
    """
    models = [str(m) for m in models]
    if len(set(models)) != len(models):
        raise ValueError(f"A model is given twice in {models}; give each --model once.")
    if not models:
        raise ValueError("Give at least one model (--model).")
    say = print if verbose else (lambda *a, **k: None)
    out = Path(out)
    # Recorded as the precision that runs, so "auto" and its value on this machine resume alike.
    precision = resolve_precision(precision, device)
    settings = {
        "format": _RUN_FORMAT, "root": Path(root).name, "tasks": list(tasks), "probes": list(probes),
        "Cs": [float(c) for c in Cs], "n_bootstrap": int(n_bootstrap), "max_records": max_records, "rate": rate,
        "features": bool(features), "pma": bool(pma), "random_state": int(random_state), "precision": precision,
    }  # fmt: skip
    runs, started = [], time.perf_counter()
    for k, model in enumerate(models, 1):
        family, weights, contract, n_layers, random = _describe(model)
        run_dir = out / "models" / _slug(model)
        marker = run_dir / "atlas-run.json"
        expected = {**settings, "model": model, "weights": weights}
        if marker.exists() and json.loads(marker.read_text()) == expected and (run_dir / "ptbxl.json").exists():
            say(f"[atlas {k}/{len(models)}] {model}: finished earlier with the same settings; reused")
            runs.append(AtlasRun(model, family, weights, contract, n_layers,
                                 read_ptbxl_results(run_dir / "ptbxl.json"), reused=True))  # fmt: skip
            continue
        say(f"[atlas {k}/{len(models)}] {model}: {family}, {weights}, {n_layers} layers; {contract}")
        result = ptbxl(
            root, model=model, rate=rate, tasks=tasks, probes=probes, Cs=Cs, n_bootstrap=n_bootstrap,
            max_records=max_records, scp_statements=scp_statements, features=features,
            random_baseline=not random, random_state=random_state, batch_size=batch_size, precision=precision,
            device=device, n_jobs=n_jobs, pma=pma, cache=out / "cache", verbose=verbose,
        )  # fmt: skip
        write_ptbxl_results(result, run_dir, figures=False)
        marker.write_text(json.dumps(expected, indent=2) + "\n")  # last: the run is complete
        runs.append(AtlasRun(model, family, weights, contract, n_layers, result))
    result = _combine(runs, n_bootstrap)
    result.timings = {"total_s": time.perf_counter() - started}
    if figure:
        result.figure = out / "atlas.png"
        plot_atlas(result, path=result.figure)
    _write(result, out)
    return result


def _combine(runs, n_bootstrap) -> AtlasResult:
    layers, table, claims = [], [], []
    first = runs[0].result
    for run in runs:
        r = run.result
        if r.scored_fold != first.scored_fold or _public_source(r.source) != _public_source(first.source):
            raise ValueError(
                f"The runs of {runs[0].model} and {run.model} scored different data (fold {first.scored_fold} of "
                f"{first.source} vs fold {r.scored_fold} of {r.source}); use a fresh --out."
            )
        t = r.table
        last = f"layer {run.n_layers - 1}"
        for row in t[t["kind"] == "layer"].itertuples():
            index = int(row.representation.split()[1])
            layers.append({"model": run.model, "family": run.family, "weights": run.weights, "task": row.task,
                           "probe": row.probe, "layer": index,
                           "relative_depth": index / max(run.n_layers - 1, 1), "auc": row.auc,
                           "ci_low": row.ci_low, "ci_high": row.ci_high, "chosen": row.chosen})  # fmt: skip
        picks = [(_CHOSEN, "chosen layer"), (last, "last layer"), *((f, "fusion") for f in _FUSIONS),
                 (_RANDOM, "random twin")]  # fmt: skip
        for source_name, name in picks:
            for row in t[t["representation"] == source_name].itertuples():
                chosen = row.chosen if isinstance(row.chosen, str) else ""
                if name == "fusion":
                    chosen = ", ".join(filter(None, [source_name, chosen]))
                table.append({"model": run.model, "family": run.family, "task": row.task, "probe": row.probe,
                              "representation": name, "auc": row.auc, "ci_low": row.ci_low,
                              "ci_high": row.ci_high, "auc_present": row.auc_present, "chosen": chosen,
                              "n_scored": row.n_scored, "classes": row.classes,
                              "classes_absent": row.classes_absent})  # fmt: skip
        c = r.claims
        for row in c[c["claim"].str.startswith("best layer - last layer")].itertuples():
            claims.append({"model": run.model, "family": run.family, "task": row.task, "probe": row.probe,
                           "difference": row.difference, "ci_low": row.ci_low, "ci_high": row.ci_high,
                           "verdict": row.verdict})  # fmt: skip
    # The clinical features do not depend on the model: one row, from the first run that has them.
    for run in runs:
        t = run.result.table
        rows = t[t["representation"] == "clinical features"]
        if len(rows):
            for row in rows.itertuples():
                table.append({"model": "-", "family": "-", "task": row.task, "probe": row.probe,
                              "representation": "clinical features", "auc": row.auc, "ci_low": row.ci_low,
                              "ci_high": row.ci_high, "auc_present": row.auc_present,
                              "chosen": row.chosen if isinstance(row.chosen, str) else "",
                              "n_scored": row.n_scored, "classes": row.classes,
                              "classes_absent": row.classes_absent})  # fmt: skip
            break
    return AtlasResult(runs, pd.DataFrame(layers), pd.DataFrame(table), pd.DataFrame(claims), first.scored_fold,
                       first.selection, _public_source(first.source), n_bootstrap)  # fmt: skip


def _public_source(source: str) -> str:
    """The data description with the folder's name, never this machine's path to it (results travel)."""
    return re.sub(r"\((/[^),]*)", lambda m: f"(folder {Path(m.group(1)).name}", str(source))


def plot_atlas(result: AtlasResult, path=None, probe: str = "logistic"):
    """One panel per task: every model's layer curve against relative depth, legend below the panels.

    Returns the matplotlib ``Figure`` (made without pyplot, so it works headless).
    """
    from matplotlib.figure import Figure

    layers = result.layers[result.layers["probe"] == probe]
    tasks = list(dict.fromkeys(layers["task"]))
    columns = min(3, len(tasks))
    rows = int(np.ceil(len(tasks) / columns))
    figure = Figure(figsize=(4.6 * columns, 3.4 * rows + 1.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=True, squeeze=False)).ravel()
    colours = {}
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
               "tab:olive", "tab:cyan", "tab:gray"]  # fmt: skip
    handles = {}
    clinical = result.table[(result.table["representation"] == "clinical features") & (result.table["probe"] == probe)]
    for ax, task in zip(axes, tasks):
        sub = layers[layers["task"] == task]
        for model, curve in sub.groupby("model", sort=False):
            colour = colours.setdefault(model, palette[len(colours) % len(palette)])
            random = curve["weights"].iloc[0] == "random weights"
            style = ":" if random else "-"
            (line,) = ax.plot(curve["relative_depth"], curve["auc"], style, marker="o", markersize=3, color=colour)
            handles.setdefault(f"{model} ({curve['family'].iloc[0]}, {curve['weights'].iloc[0]})", line)
            chosen = result.table[(result.table["model"] == model) & (result.table["task"] == task)
                                  & (result.table["probe"] == probe) & (result.table["representation"] == "chosen layer")]  # fmt: skip
            if len(chosen):
                layer = int(str(chosen.iloc[0]["chosen"]).split(",")[0].split()[1])
                depth = curve[curve["layer"] == layer]["relative_depth"]
                if len(depth):
                    (star,) = ax.plot(depth, [chosen.iloc[0]["auc"]], "*", color=colour, markersize=11,
                                      markeredgecolor="black", markeredgewidth=0.5)  # fmt: skip
                    handles.setdefault("layer chosen on validation", star)
        row = clinical[clinical["task"] == task]
        if len(row):
            handles.setdefault("clinical features", ax.axhline(float(row.iloc[0]["auc"]), color="black",
                                                               linestyle="-.", linewidth=1))  # fmt: skip
        handles.setdefault("chance (0.5)", ax.axhline(0.5, color="tab:red", linewidth=0.8, alpha=0.5))
        ax.set_title(f"{PTBXL_TASK_NAMES.get(task, task)}", fontsize=10)
        ax.set_ylabel(f"macro AUC (fold {result.scored_fold})", fontsize=8)
        ax.set_xlabel("relative depth (0 first layer, 1 last)", fontsize=8)
        ax.set_xlim(-0.03, 1.03)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=2, fontsize=8,
                  frameon=False)  # fmt: skip
    figure.suptitle(f"Per-layer atlas, {probe} probe: dotted curves are random-weight architecture baselines",
                    fontsize=10)  # fmt: skip
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def _write(result: AtlasResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "atlas.csv", index=False)
    result.layers.to_csv(out / "atlas_layers.csv", index=False)
    payload = {
        "source": result.source, "scored_fold": result.scored_fold, "selection": result.selection,
        "n_bootstrap": result.n_bootstrap,
        "models": [{"model": r.model, "family": r.family, "weights": r.weights, "contract": r.contract,
                    "n_layers": r.n_layers, "timings_s": r.result.timings} for r in result.runs],
        "table": json_records(result.table), "claims": json_records(result.claims),
        "layers": json_records(result.layers),
    }  # fmt: skip
    (out / "atlas.json").write_text(json.dumps(payload, indent=2, default=lambda value: value.item()) + "\n")
    (out / "atlas.md").write_text(result.summary() + "\n")
