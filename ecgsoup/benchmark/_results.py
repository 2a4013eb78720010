"""The benchmark's result: tables, warnings, summaries, figures, and the files it is saved as."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgsoup._files import atomic_write_text
from ecgsoup.benchmark._data import MAX_ABSENT_FRACTION, MIN_SCORED_RECORDS, SUMMARY_ROWS
from ecgsoup.benchmark._probes import PROBE_NAMES
from ecgsoup.tasks import (
    PTBXL_TASK_NAMES,
)


def result_cell(rows: pd.DataFrame) -> str:
    """A table cell: the first row's AUC, its interval and what was chosen; empty when there is no row."""
    if rows.empty:
        return ""
    r = rows.iloc[0]
    pick = f" ({r['chosen']})" if r["chosen"] else ""
    return f"{r['auc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]{pick}"


@dataclass
class PTBXLResult:
    """What :func:`ptbxl` measured; ``table`` is the tidy result, one row per cell."""

    table: pd.DataFrame
    claims: pd.DataFrame
    tasks: pd.DataFrame
    scored_fold: int
    selection: str
    model: str
    source: str
    timings: dict
    figures: list = field(default_factory=list)
    n_bootstrap: int = 1000

    def to_markdown(self, probe: str = "logistic") -> str:
        """The six-task table for one probe: macro AUC [95 % interval] per representation."""
        sub = self.table[self.table["probe"] == probe]
        order = list(dict.fromkeys(sub["representation"]))
        lines = ["| representation | " + " | ".join(f"{t} ({n})" for t, n in self._task_sizes()) + " |",
                 "|---|" + "---|" * len(self._task_sizes())]  # fmt: skip
        for rep in order:
            cells = []
            for task, _ in self._task_sizes():
                cells.append(result_cell(sub[(sub["representation"] == rep) & (sub["task"] == task)]))
            lines.append(f"| {rep} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _task_sizes(self):
        return [(t, int(n)) for t, n in zip(self.tasks["task"], self.tasks["classes_used"])]

    def warnings(self) -> list[str]:
        """One line per task scored on too few records or missing too many classes in the scored fold."""
        lines = []
        for _, t in self.tasks.iterrows():
            if t["n_scored"] < MIN_SCORED_RECORDS:
                lines.append(f"task {t['task']} is scored on {t['n_scored']} records (under {MIN_SCORED_RECORDS}): "
                             "its intervals are wide and one record moves its AUC.")  # fmt: skip
            absent = int(t["classes_absent_from_scored_fold"])
            if absent > t["classes_used"] * MAX_ABSENT_FRACTION:
                lines.append(f"task {t['task']}: {absent} of its {t['classes_used']} classes are absent from the "
                             f"scored fold and count 0.5 under the ECG-Soup rule; read the \"classes present\" "
                             "variant beside it.")  # fmt: skip
        return lines

    def tasks_markdown(self) -> str:
        """The tasks table: classes defined, used and absent from the scored fold; training and scored records."""
        lines = ["| task | classes defined | classes used | absent from the scored fold | training records "
                 "| scored records |", "|---|---|---|---|---|---|"]  # fmt: skip
        for _, t in self.tasks.iterrows():
            lines.append(f"| {t['task']} ({t['description']}) | {t['classes_defined']} | {t['classes_used']} | "
                         f"{t['classes_absent_from_scored_fold']} | {t['n_train']} | {t['n_scored']} |")  # fmt: skip
        return "\n".join(lines)

    def summary_markdown(self, probe: str = "logistic") -> str:
        """The short table: the chosen layer, PPA, random weights, clinical features and hybrid per task."""
        sub = self.table[self.table["probe"] == probe]
        names = [(rep, short) for rep, short in SUMMARY_ROWS.items() if rep in set(sub["representation"])]
        tasks = [t for t, _ in self._task_sizes()]
        lines = ["| representation | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for rep, short in names:
            cells = []
            for task in tasks:
                row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
                cells.append("" if row.empty else f"{row.iloc[0]['auc']:.3f}")
            lines.append(f"| {short} | " + " | ".join(cells) + " |")
        present = sub[sub["representation"] == "best layer (chosen on validation)"]
        cells = [f"{present[present['task'] == t].iloc[0]['auc_present']:.3f}" if (present["task"] == t).any() else ""
                 for t in tasks]  # fmt: skip
        lines.append("| chosen layer, \"classes present\" variant | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def full_markdown(self, probe: str = "logistic", variant: str = "rule") -> str:
        """Every representation and task: AUC and its interval, one compact cell each (choices in the CSV)."""
        sub = self.table[self.table["probe"] == probe]
        tasks = [t for t, _ in self._task_sizes()]
        auc, low, high = ("auc", "ci_low", "ci_high") if variant == "rule" else (
            "auc_present", "ci_present_low", "ci_present_high")  # fmt: skip
        lines = ["| representation | " + " | ".join(f"{t} ({n})" for t, n in self._task_sizes()) + " |",
                 "|---|" + "---|" * len(tasks)]  # fmt: skip
        picks = {}
        for rep in dict.fromkeys(sub["representation"]):
            cells = []
            for task in tasks:
                row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
                if row.empty:
                    cells.append("")
                    continue
                r = row.iloc[0]
                if "chosen" in rep:  # which layer or fusion was chosen: a row of its own keeps cells short
                    picks.setdefault(rep, {})[task] = str(r["chosen"]).split(", C=")[0].split(",")[0]
                cells.append(f"{r[auc]:.3f} [{r[low]:.3f}, {r[high]:.3f}]")
            lines.append(f"| {rep} | " + " | ".join(cells) + " |")
        for rep, chosen in picks.items():
            what = rep.split(" (")[0]
            lines.append(f"| *{what}: which* | " + " | ".join(chosen.get(t, "") for t in tasks) + " |")
        return "\n".join(lines)

    def report_markdown(self, *, title: str = "PTB-XL benchmark", caveats: str | None = None) -> str:
        """A results file that explains itself: summary, warnings, tasks, full tables, claims, caveats."""
        lines = [f"# {title}", "",
                 f"Model: `{self.model}`. Data: {self.source}. **Scored fold: {self.scored_fold}** (training "
                 f"folds 1-8). Choices (C, layer, fusion): {self.selection}.", "",
                 f"Macro ROC AUC on fold {self.scored_fold}, ECG-Soup rule (a class absent from the scored fold "
                 f"counts 0.5), logistic probe:", "", self.summary_markdown(), ""]  # fmt: skip
        found = self.warnings()
        if found:
            lines += ["**Warnings**", ""] + [f"- {w}" for w in found] + [""]
        lines += ["## Tasks", "", self.tasks_markdown(), ""]
        for probe in dict.fromkeys(self.table["probe"]):
            lines += [f"## {PROBE_NAMES[probe][0].upper()}{PROBE_NAMES[probe][1:]}", "",
                      f"Macro ROC AUC, ECG-Soup rule [bootstrap 95 % interval, {self.n_bootstrap} resamples of "
                      "the scored records]; the last rows name what was chosen. Headers: task (classes used).", "",
                      self.full_markdown(probe), ""]  # fmt: skip
        if "logistic" in set(self.table["probe"]):
            lines += ["## \"Classes present\" variant (logistic probe)", "",
                      "Classes absent from the scored fold are left out of the mean instead of counting 0.5.", "",
                      self.full_markdown("logistic", "present"), ""]  # fmt: skip
        lines += ["## The paper's two claims, as measured here", "",
                  "Paired bootstrap over the same resampled records (ECG-Soup rule).", "",
                  "| probe | task | claim | difference | 95 % interval | verdict |", "|---|---|---|---|---|---|"]
        for _, c in self.claims.iterrows():
            lines.append(f"| {c['probe']} | {c['task']} | {c['claim']} | {c['difference']:+.3f} | "
                         f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['verdict']} |")  # fmt: skip
        lines += ["", "## Caveats", "", caveats if caveats is not None else self.caveats()]
        return "\n".join(lines) + "\n"

    def caveats(self) -> str:
        """What every reader of these numbers needs to know, from the run itself."""
        n_claims = len(self.claims)
        return "\n".join([
            f"- **Scored fold.** Fold {self.scored_fold}; choices were made {self.selection}. Published PTB-XL "
            "numbers are fold-10 scores on the full dataset (21,799 records).",
            "- **Classes.** A task uses the classes that occur in its labelled records; under the ECG-Soup rule "
            "a class absent from the scored fold counts 0.5, so the more classes are absent (tasks table), the "
            "lower the score; the \"classes present\" variant leaves them out.",
            f"- **Intervals.** Percentile bootstrap over the scored records ({self.n_bootstrap} resamples); "
            "a class that a resample loses is left out of that resample.",
            "- **Rows.** The per-layer rows show every layer, so the best of them is optimistic; quote the row "
            "\"best layer (chosen on validation)\".",
            f"- **Claims.** {n_claims} paired intervals; at 95 % about one in twenty excludes 0 by chance alone.",
        ]) + "\n"

    def summary(self) -> str:
        """A plain-text report: which fold was scored, the two tables, the two claims."""
        head = (
            f"PTB-XL benchmark, model {self.model}; data: {self.source}\n"
            f"Scored fold: {self.scored_fold} (train folds 1-8). Choices (C, layer, fusion): {self.selection}.\n"
            f"Macro ROC AUC, ECG-Soup rule (a class absent from fold {self.scored_fold} counts 0.5), "
            f"[bootstrap 95 % interval, {self.n_bootstrap} resamples of the scored records]; "
            "column headers give the classes used.\n"
        )
        parts = [head, *[f"WARNING: {w}" for w in self.warnings()], "\n" + self.tasks_markdown()]
        for probe in dict.fromkeys(self.table["probe"]):
            parts.append(f"\nProbe: {PROBE_NAMES[probe]}\n" + self.to_markdown(probe))
        parts.append("\nThe paper's two claims, as measured here (paired bootstrap, ECG-Soup rule):")
        for _, c in self.claims.iterrows():
            parts.append(f"  {c['probe']:8s} {c['task']:6s} {c['claim']}: {c['difference']:+.3f} "
                         f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]  ({c['verdict']})")  # fmt: skip
        t = self.timings
        parts.append(f"\nWall time: embedding {t['embedding_s']:.0f} s, clinical features {t['features_s']:.0f} s, "
                     f"probes {t['probes_s']:.0f} s, bootstrap {t['bootstrap_s']:.0f} s.")  # fmt: skip
        return "\n".join(parts)


# --- outputs ------------------------------------------------------------------------------


def plot_ptbxl_task(result: PTBXLResult, task: str, path=None):
    """One task's figure: a panel per probe with the layer curve, its interval band and the other rows.

    Returns the matplotlib ``Figure`` (made without pyplot, so it works headless).
    """
    from matplotlib.figure import Figure

    table = result.table[result.table["task"] == task]
    probes = list(dict.fromkeys(table["probe"]))
    figure = Figure(figsize=(6.4 * len(probes), 5.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(probes), sharey=True))
    styles = {
        "best fusion (chosen on validation)": None,
        "PPA": ("tab:blue", "--"),
        "PMA (trained gate)": ("tab:orange", "--"),
        "random weights (layer chosen on validation)": ("tab:gray", ":"),
        "clinical features": ("tab:green", "-."),
        "clinical features + best layer": ("tab:purple", "-."),
    }
    low = min(0.45, float(table["ci_low"].min()) - 0.02)
    for ax, probe in zip(axes, probes):
        rows = table[table["probe"] == probe]
        layers = rows[rows["kind"] == "layer"]
        x = [int(name.split()[1]) for name in layers["representation"]]
        ax.fill_between(x, layers["ci_low"], layers["ci_high"], color="black", alpha=0.12,
                        label="single layer: 95 % bootstrap interval")  # fmt: skip
        ax.plot(x, layers["auc"], "o-", color="black", label="single layer")
        chosen = rows[rows["representation"] == "best layer (chosen on validation)"].iloc[0]
        ax.plot([int(chosen["chosen"].split(",")[0].split()[1])], [chosen["auc"]], "*", color="tab:red",
                markersize=14, label=f"layer chosen on validation ({chosen['auc']:.3f})")  # fmt: skip
        for name, style in styles.items():
            match = rows[rows["representation"] == name]
            if style is None or match.empty:
                continue
            value = float(match.iloc[0]["auc"])
            ax.axhline(value, color=style[0], linestyle=style[1], label=f"{name} ({value:.3f})")
        ax.axhline(0.5, color="tab:red", linewidth=0.8, alpha=0.6, label="chance (0.5)")
        ax.set_xticks(x)
        ax.set_xlabel("layer (0 = token embedding)")
        ax.set_ylabel(f"macro ROC AUC (fold {result.scored_fold})")
        ax.set_ylim(low, 1.0)
        ax.set_title(f"{PTBXL_TASK_NAMES[task]} ({int(rows['classes'].iloc[0])} classes): {probe} probe", fontsize=10)
    # Beside the panels, never over a curve; the values differ per probe, so one legend per panel, below it.
    for ax in axes:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncols=2, frameon=False)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_ptbxl_summary(result: PTBXLResult, path=None, probe: str = "logistic"):
    """Six tasks side by side: the chosen layer, PPA and the baselines, each with its 95 % interval."""
    from matplotlib.figure import Figure

    sub = result.table[result.table["probe"] == probe]
    tasks = [t for t, _ in result._task_sizes()]
    reps = [rep for rep in SUMMARY_ROWS if rep in set(sub["representation"])]
    colours = ["black", "tab:blue", "tab:gray", "tab:green", "tab:purple"]
    figure = Figure(figsize=(9.0, 4.6), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / max(len(reps), 1)
    for k, rep in enumerate(reps):
        x, y, low, high = [], [], [], []
        for i, task in enumerate(tasks):
            row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
            if row.empty:
                continue
            r = row.iloc[0]
            x.append(i - 0.4 + width * (k + 0.5))
            y.append(r["auc"])
            low.append(r["auc"] - r["ci_low"])
            high.append(r["ci_high"] - r["auc"])
        ax.errorbar(x, y, yerr=[low, high], fmt="o", color=colours[k % len(colours)], capsize=2,
                    label=SUMMARY_ROWS[rep])  # fmt: skip
    ax.axhline(0.5, color="tab:red", linewidth=0.8, alpha=0.6, label="chance (0.5)")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([f"{t}\n({n} classes)" for t, n in result._task_sizes()])
    ax.set_ylabel(f"macro ROC AUC, fold {result.scored_fold} (95 % interval)")
    ax.set_ylim(min(0.45, float(sub["ci_low"].min()) - 0.02), 1.0)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def ptbxl_result_from_json(payload: dict) -> PTBXLResult:
    """A :class:`PTBXLResult` from the JSON :func:`write_ptbxl_results` (or the benchmark script) wrote.

    Redraws figures and tables from saved results without running the benchmark again.
    """
    return PTBXLResult(pd.DataFrame(payload["table"]), pd.DataFrame(payload["claims"]),
                       pd.DataFrame(payload["tasks"]), int(payload["scored_fold"]), payload["selection"],
                       str(payload["model"]), payload.get("source", "PTB-XL"), payload.get("timings_s", {}),
                       n_bootstrap=int(payload.get("n_bootstrap", 1000)))  # fmt: skip


def _json_scalar(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def json_records(frame: pd.DataFrame) -> list[dict]:
    """The rows of a results table as JSON-ready records: numpy scalars as Python numbers, NaN as null."""
    return [{k: _json_scalar(v) for k, v in row.items()} for row in frame.to_dict("records")]


def read_ptbxl_results(path) -> PTBXLResult:
    """The :class:`PTBXLResult` that :func:`write_ptbxl_results` saved as ``<name>.json``."""
    return ptbxl_result_from_json(json.loads(Path(path).read_text()))


def write_json(result: PTBXLResult, out: Path, name: str) -> None:
    payload = {
        "model": result.model, "source": result.source, "scored_fold": result.scored_fold,
        "warnings": result.warnings(),
        "selection": result.selection, "n_bootstrap": result.n_bootstrap, "timings_s": result.timings,
        "tasks": result.tasks.to_dict("records"),
        "table": json_records(result.table), "claims": json_records(result.claims),
    }  # fmt: skip
    atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=2, default=_json_scalar) + "\n")


def write_ptbxl_results(result: PTBXLResult, out, *, name="ptbxl", figures=True) -> list[Path]:
    """Write ``<name>.json``, ``<name>.md``, ``<name>.csv`` and one figure per task into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if figures:
        result.figures = []
        for task in dict.fromkeys(result.table["task"]):
            path = out / f"{name}_{task}.png"
            plot_ptbxl_task(result, task, path)
            result.figures.append(path)
        paths += result.figures
    result.table.to_csv(out / f"{name}.csv", index=False)
    write_json(result, out, name)
    (out / f"{name}.md").write_text(result.report_markdown())
    return [out / f"{name}.json", out / f"{name}.md", out / f"{name}.csv", *paths]
