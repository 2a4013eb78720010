"""Pretraining scaling curve: epochs against validation loss and the fold-9 PTB-XL probe.

For every encoder given (``epoch-NNN/`` snapshots of one run, the bundled model, the
ST-MEM backbone), runs the PTB-XL benchmark on the z-scored subset with the logistic probe on
the two selection tasks (super-classes and all statements), and writes
``benchmarks/results/pretraining/scaling.{json,md}`` with the pretraining validation loss the
model's own metadata records, and the figure ``docs/results/scaling.png`` (validation loss per
epoch from the committed run logs, the fold-9 probe of each kept encoder; ``--plot-only``
redraws it from the committed rows).  Fold 9 is scored; C and the layer are chosen inside folds 1-8.
Selection never looks at LUDB or at fold 10.

Run:  .venv/bin/python benchmarks/scaling.py runs/tiny-ipa-400/epoch-045 runs/tiny-ipa-400/epoch-100 default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, RESULTS_DIR, shared_data_path  # noqa: E402

from ecgsoup.backbones.stmem import load_model  # noqa: E402
from ecgsoup.benchmark import ptbxl  # noqa: E402

OUT = RESULTS_DIR / "pretraining" / "scaling"
FIGURE = REPO_ROOT / "docs" / "results" / "scaling.png"
COLOURS = {"ipa": "tab:blue", "st-mem": "tab:orange"}


def _run_log(model: str) -> Path | None:
    """The committed per-epoch log of the run an ``runs/<run>/epoch-NNN`` encoder came from."""
    parts = Path(model).parts
    if len(parts) >= 2 and parts[0] == "runs":
        log = RESULTS_DIR / "pretraining" / f"{parts[1]}.csv"
        return log if log.exists() else None
    return None


def plot(rows: list[dict], path: Path = FIGURE) -> Path:
    """Validation loss against epoch, and the fold-9 probe of each kept encoder, per objective."""
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6), layout="constrained")
    loss_ax, *probe_axes = fig.subplots(1, 3)
    drawn = set()
    for r in rows:
        log = _run_log(r["model"])
        colour = COLOURS.get(r["objective"], "grey")
        if log is not None and log not in drawn:
            drawn.add(log)
            frame = pd.read_csv(log)
            loss_ax.plot(frame["epoch"], frame["val_loss"], color=colour, lw=1.2, label=f"{r['objective']} ({log.stem})")
    for r in rows:
        if r.get("epoch") is not None and r.get("val_loss") is not None:
            loss_ax.plot(r["epoch"], r["val_loss"], "o", ms=4, color=COLOURS.get(r["objective"], "grey"))
    loss_ax.set(xlabel="epoch (of a 400-epoch schedule)", ylabel="validation loss (fold 9)",
                title="Masked-reconstruction loss\n(dots: kept encoders)")  # fmt: skip
    loss_ax.legend(fontsize=8)
    for ax, task, name in zip(probe_axes, ("super", "all"), ("super-classes", "all statements")):
        for objective in dict.fromkeys(r["objective"] for r in rows):
            mine = sorted((r for r in rows if r["objective"] == objective and r.get("epoch")), key=lambda r: r["epoch"])
            if not mine:
                continue
            shift = {"ipa": -1.5, "st-mem": 1.5}.get(objective, 0.0)  # keep the error bars apart
            epochs = [r["epoch"] + shift for r in mine]
            auc = [r[f"{task}_best"] for r in mine]
            low = [a - r[f"{task}_best_ci"][0] for a, r in zip(auc, mine)]
            high = [r[f"{task}_best_ci"][1] - a for a, r in zip(auc, mine)]
            ax.errorbar(epochs, auc, yerr=[low, high], fmt="o-", ms=4, capsize=3, lw=1.2,
                        color=COLOURS.get(objective, "grey"), label=objective)  # fmt: skip
        ax.set(xlabel="epoch", ylabel="macro ROC AUC, fold 9", title=f"Fold-9 logistic probe, {name}\n(layer chosen in folds 1-8; 95 % interval)")
        ax.legend(fontsize=8, loc="lower right")
    for ax in (loss_ax, *probe_axes):
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--cache", default=str(REPO_ROOT / ".ptbxl-cache" / "scaling"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the committed rows")
    args = parser.parse_args()
    if args.plot_only:
        print(plot(json.loads(OUT.with_suffix(".json").read_text())["rows"]))
        return
    if not args.models:
        parser.error("give the encoders to score (e.g. runs/tiny-ipa-400/epoch-100), or --plot-only")
    root = shared_data_path() / "ptbxl_zscored_subset"
    previous = json.loads(OUT.with_suffix(".json").read_text())["rows"] if OUT.with_suffix(".json").exists() else []
    rows = {(r["model"]): r for r in previous}
    for model in args.models:
        encoder = load_model(model)
        meta = encoder.metadata
        settings = meta.get("settings", {})
        result = ptbxl(root, model=encoder, tasks=("super", "all"), probes=("logistic",), features=False,
                       random_baseline=False, n_bootstrap=1000, out=Path(args.cache), verbose=False)  # fmt: skip
        table = result.table.set_index(["task", "representation"])
        row = {"model": model, "objective": meta.get("objective"), "epoch": meta.get("epoch"),
               "schedule_epochs": settings.get("epochs"), "val_loss": meta.get("val_loss"),
               "train_loss": meta.get("train_loss")}  # fmt: skip
        for task in ("super", "all"):
            for rep, key in (("best layer (chosen on validation)", "best"), ("layer 12", "last"), ("PPA", "ppa")):
                cell = table.loc[(task, rep)]
                row[f"{task}_{key}"] = round(float(cell["auc"]), 4)
                row[f"{task}_{key}_ci"] = [round(float(cell["ci_low"]), 4), round(float(cell["ci_high"]), 4)]
            row[f"{task}_best_layer"] = table.loc[(task, "best layer (chosen on validation)"), "chosen"]
        rows[model] = row
        print(json.dumps(row))
    ordered = sorted(rows.values(), key=lambda r: (str(r["objective"]), r["epoch"] or 0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": ordered}, indent=2) + "\n")
    lines = ["# Pretraining scaling curve (PTB-XL subset, fold 9 scored, logistic probe)", "",
             "Macro ROC AUC under the ECG-Soup rule [bootstrap 95 % interval]; the layer and C chosen by "
             "two-fold cross-validation inside folds 1-8. Validation loss: the masked-reconstruction loss on "
             "fold 9 recorded when the encoder was saved (1.0 = predicting each masked patch's mean).", "",
             "| model | objective | epoch (of schedule) | val loss | super, chosen layer | super, last layer | "
             "all, chosen layer | all, last layer |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in ordered:
        def cell(task, key, r=r):
            low, high = r[f"{task}_{key}_ci"]
            return f"{r[f'{task}_{key}']:.3f} [{low:.3f}, {high:.3f}]"

        lines.append(f"| `{r['model']}` | {r['objective']} | {r['epoch']} (of {r['schedule_epochs']}) | "
                     f"{r['val_loss']} | {cell('super', 'best')} ({r['super_best_layer']}) | {cell('super', 'last')} | "
                     f"{cell('all', 'best')} ({r['all_best_layer']}) | {cell('all', 'last')} |")  # fmt: skip
    lines += ["", f"Command: `python benchmarks/scaling.py {' '.join(args.models)}` (rows accumulate across runs)."]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(ordered)


if __name__ == "__main__":
    main()
