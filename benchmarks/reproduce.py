"""Reproduce the ECG-Soup findings on the data we have: layer curves, fusion table, analyses.

For each LUDB task (``ecgsoup.tasks``) and, when ``--ptbxl ROOT`` points at a
full PTB-XL download, the PTB-XL diagnostic superclasses, this script
reports with repeated stratified cross-validation (mean ± std over all
folds of all repeats; the repeats use different seeds for the folds and for
PMA's training):

* the per-layer probe curve of the default backbone (IPA-pretrained) and of
  a comparison backbone pretrained with the other objective (ST-MEM, shipped
  in ``benchmarks/models/``; same architecture and data, and a shorter schedule: each
  backbone's epoch count is in the output);
* the fusion table: last layer, middle layer, best single layer chosen by an
  inner CV on the training folds only (honest), PPA, PMA, and the comparison
  backbone's last layer and PPA;
* layer analyses of the default backbone on the same records: cross-layer
  cosine similarity (pooled and token-wise), linear CKA, attention entropy
  per layer and head, and the distribution of PMA gate weights.

Everything is written into ``docs/results/`` (``reproduce.md`` plus PNG
figures) and ``benchmarks/results/reproduce.json``.

Run:  .venv/bin/python benchmarks/reproduce.py [--repeats 2] [--compare-model DIR] [--ptbxl ROOT]
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, timed, write_results  # noqa: E402

from ecgsoup import (  # noqa: E402
    ECGPreprocessor,
    LayerwiseEmbedder,
    analysis,  # noqa: E402
    load_sample,
)
from ecgsoup.evaluate import layer_probe, macro_auc_scorer, plot_layer_probe  # noqa: E402
from ecgsoup.fusion import LayerSelector  # noqa: E402
from ecgsoup.pma import PMA  # noqa: E402
from ecgsoup.tasks import ludb_targets  # noqa: E402

DOCS = REPO_ROOT / "docs" / "results"
COMPARE = REPO_ROOT / "benchmarks" / "models" / "ecgsoup-100hz-tiny-st-mem"


def _probe() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])


def embed(dataset, model) -> tuple[np.ndarray, np.ndarray, LayerwiseEmbedder]:
    """Layer-wise embeddings plus the model-ready signals (for the token-level analyses)."""
    pre = ECGPreprocessor(sampling_rate=dataset.sampling_rate, lead_names=dataset.lead_names, model=model, length="crop")
    ready = pre.fit_transform(dataset.X)
    embedder = LayerwiseEmbedder(model=model)
    return embedder.fit_transform(ready), ready, embedder


def selected_layer_scores(X, y, folds, spec) -> np.ndarray:
    """Best single layer picked by a 3-fold inner CV on each training fold (no peeking)."""
    n_layers = len(spec.layers)
    search = GridSearchCV(
        Pipeline([("select", LayerSelector(layer_spec=spec)), ("probe", _probe())]),
        {"select__layers": list(range(1, n_layers))},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring=macro_auc_scorer,
    )
    return cross_val_score(search, X, y, cv=folds, scoring=macro_auc_scorer)


def run_task(name, y, X, X_other, repeats, seed, label="comparison", *, spec,
             other_spec=None) -> tuple[pd.DataFrame, dict, pd.DataFrame | None]:
    folds = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=seed).split(X, y))
    curve = layer_probe(X, y, cv=folds, fusions=("ppa", "pma"), layer_spec=spec, random_state=seed)
    other_curve = (layer_probe(X_other, y, cv=folds, fusions=("ppa",), layer_spec=other_spec, random_state=seed)
                   if X_other is not None else None)
    selected = selected_layer_scores(X, y, folds, spec)
    last, middle = "layer_12", "layer_06"
    rows = {
        "last layer (12)": curve.loc[last],
        "middle layer (6)": curve.loc[middle],
        "best single layer, inner-CV selected": pd.Series({"mean": selected.mean(), "std": selected.std()}),
        "PPA": curve.loc["ppa"],
        "PMA": curve.loc["pma"],
    }
    if other_curve is not None:
        rows[f"{label} backbone: last layer"] = other_curve.loc[last]
        rows[f"{label} backbone: PPA"] = other_curve.loc["ppa"]
    table = {k: (float(v["mean"]), float(v["std"])) for k, v in rows.items()}
    return curve, table, other_curve


def _shown(path) -> str:
    """A path as seen from the repository root (results must not name this machine's folders)."""
    if not path:
        return "not given"
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def findings(tasks: dict) -> list[str]:
    """The paper's two claims, checked per task against the fold spread."""
    out = [
        "## The two claims, task by task",
        "",
        "| task | last layer | middle layer | best layer (inner CV) | PPA | PMA | middle > last? | best fusion > best single? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, info in tasks.items():
        t = {k: v[0] for k, v in info["table"].items()}
        last, middle, best = t["last layer (12)"], t["middle layer (6)"], t["best single layer, inner-CV selected"]
        fusion = max(t["PPA"], t["PMA"])
        single = max(last, middle, best)
        out.append(
            f"| {task} | {last:.3f} | {middle:.3f} | {best:.3f} | {t['PPA']:.3f} | {t['PMA']:.3f} | "
            f"{'yes' if middle > last else 'no'} ({middle - last:+.3f}) | "
            f"{'yes' if fusion > single else 'no'} ({fusion - single:+.3f}) |"
        )
    out += ["", "Differences smaller than the fold standard deviations below are not evidence either way.", ""]
    return out


def plot_curves(task, curve, other_curve, path, labels=("default", "comparison")) -> None:
    figure = plot_layer_probe(curve, title=f"{task}: {labels[0]} (black), {labels[1]} (grey)")
    if other_curve is not None:
        ax = figure.axes[0]
        layers = [i for i in other_curve.index if i.startswith("layer_")]
        ax.errorbar(range(len(layers)), other_curve.loc[layers, "mean"], yerr=other_curve.loc[layers, "std"],
                    marker="s", capsize=3, color="grey", label=f"{labels[1]} backbone")  # fmt: skip
        ax.legend(loc="best", fontsize="small")
    figure.savefig(path)


def ptbxl_superclasses(root: Path):
    """PTB-XL at 100 Hz with the 5 diagnostic superclasses as a multi-label target."""
    from ecgsoup.io import read_ptbxl

    dataset = read_ptbxl(root, sampling_rate=100)
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    superclass = statements["diagnostic_class"].dropna().to_dict()
    codes = dataset.metadata["scp_codes"].map(lambda c: c if isinstance(c, dict) else ast.literal_eval(c))
    labels = codes.map(lambda c: sorted({superclass[k] for k in c if k in superclass}))
    y = MultiLabelBinarizer().fit_transform(labels)
    return dataset, y


def analyses(X, ready, embedder, y, seed, lines) -> None:
    n = min(64, len(ready))
    encoder = embedder.model_
    spec = embedder.layer_spec_
    cos = analysis.layer_cosine_similarity(X, layer_spec=spec)
    analysis.plot_similarity_matrix(cos, "Cosine similarity of pooled layers (LUDB)", path=DOCS / "layer_cosine.png")
    token_cos = analysis.token_cosine_similarity(encoder, ready[:n])
    analysis.plot_similarity_matrix(token_cos, f"Token-wise cosine similarity ({n} records)", path=DOCS / "token_cosine.png")
    cka = analysis.linear_cka(X, layer_spec=spec)
    analysis.plot_similarity_matrix(cka, "Linear CKA between layers (LUDB)", path=DOCS / "layer_cka.png")
    entropy = analysis.attention_entropy(encoder, ready[:n])
    analysis.plot_attention_entropy(entropy, path=DOCS / "attention_entropy.png")
    pma = PMA(random_state=seed, layer_spec=spec).fit(X, y)
    gates = analysis.gate_weight_distribution(pma, X)
    analysis.plot_gate_weights(gates, path=DOCS / "gate_weights.png")
    adjacent = np.diag(cos, 1)
    per_layer = entropy.groupby("layer")[["entropy_normalised", "within_lead_mass", "cross_lead_mass"]].mean()
    lines += [
        "## Layer analyses (default backbone, LUDB)",
        "",
        f"- Pooled cosine similarity between adjacent blocks: {adjacent[1:].min():.3f} to {adjacent[1:].max():.3f}; "
        f"layer 1 vs layer 12: {cos[1, 12]:.3f}. Linear CKA layer 1 vs 12: {cka[1, 12]:.3f}; "
        f"layer 6 vs 12: {cka[6, 12]:.3f}.",
        f"- Attention entropy (normalised by log S) falls from {per_layer['entropy_normalised'].iloc[0]:.2f} "
        f"in block 1 to {per_layer['entropy_normalised'].min():.2f} at its lowest (block "
        f"{int(per_layer['entropy_normalised'].idxmin())}); within-lead attention mass ranges "
        f"{per_layer['within_lead_mass'].min():.2f}-{per_layer['within_lead_mass'].max():.2f}.",
        f"- PMA gate (trained on hypertrophy, all 200 records): largest mean weight on layer "
        f"{gates['mean'].idxmax()} ({gates['mean'].max():.3f}); uniform would be {1 / len(gates):.3f}.",
        "",
        "![cosine](layer_cosine.png) ![token cosine](token_cosine.png) ![CKA](layer_cka.png)",
        "",
        "![attention entropy](attention_entropy.png) ![gate weights](gate_weights.png)",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--compare-model", default=str(COMPARE) if COMPARE.exists() else None,
                        help="a second backbone (by default the ST-MEM-objective run)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ptbxl", type=Path, help="root of a full PTB-XL download (optional)")
    args = parser.parse_args()
    DOCS.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", message="The least populated class")
    warnings.filterwarnings("ignore", message=".*only one label value.*")

    sample = load_sample()
    seconds, (X, ready, embedder) = timed(embed, sample, args.model)
    X_other, label, other_epochs, other_spec = None, None, None, None
    if args.compare_model:
        X_other, _, other = embed(sample, args.compare_model)
        other_spec = other.layer_spec_
        label = other.model_.metadata.get("objective", "comparison")
        other_epochs = other.model_.metadata.get("epoch")
    meta = embedder.model_.metadata
    labels = (meta.get("objective", "default"), label or "comparison")
    lines = [
        "# Reproducing the ECG-Soup findings on LUDB",
        "",
        f"Command: `{' '.join(['python', 'benchmarks/reproduce.py', *sys.argv[1:]])}`. "
        f"Backbone: `{embedder.config_.name}` ({meta.get('objective', 'unknown objective')}, "
        f"checkpoint of epoch {meta.get('epoch', '?')}, sha256 {embedder.fingerprint_[:12]}); "
        f"comparison backbone: {_shown(args.compare_model)} ({label}, checkpoint of epoch {other_epochs or '?'}). "
        f"Probe: standardised logistic regression; 5-fold stratified CV x {args.repeats} repeats "
        f"(mean ± std over {5 * args.repeats} folds).",
        "",
        "**What this data can and cannot show.** LUDB has 200 records; atrial fibrillation has 15 "
        "positives and some rhythm classes 2-4, so fold-to-fold spread is large and differences of a "
        "few hundredths are not meaningful. LUDB amplitudes are range-normalised per lead by the "
        "publisher, so amplitude-based findings (hypertrophy voltage criteria) are blunted. The "
        "backbone is a tiny model pretrained on 1,442 records, far from the paper's ViT-B on ~100k "
        "ECGs: the curves show how the method behaves, not the paper's numbers.",
        "",
    ]
    payload = {"tasks": {}}
    summary_at = len(lines)
    targets = ludb_targets(sample.metadata)
    for task, y in targets.items():
        started = time.perf_counter()
        curve, table, other_curve = run_task(task, y, X, X_other, args.repeats, args.seed, labels[1],
                                             spec=embedder.layer_spec_, other_spec=other_spec)
        plot_curves(task, curve, other_curve, DOCS / f"layers_{task}.png", labels)
        payload["tasks"][task] = {"table": table, "curve": curve.to_dict(),
                                  "other_curve": None if other_curve is None else other_curve.to_dict()}  # fmt: skip
        best_layer = curve.loc[[i for i in curve.index if i.startswith("layer_")], "mean"].idxmax()
        lines += [f"## {task} ({len(y)} records)", "", "| representation | macro AUC |", "|---|---|"]
        lines += [f"| {k} | {m:.3f} ± {s:.3f} |" for k, (m, s) in table.items()]
        lines += [
            "",
            f"Best layer on the scored folds (optimistic, for the curve only): {best_layer} "
            f"({curve.loc[best_layer, 'mean']:.3f}).",
            "",
            f"![{task}](layers_{task}.png)",
            "",
        ]
        print(f"{task}: {time.perf_counter() - started:.0f} s  " + ", ".join(f"{k} {m:.3f}" for k, (m, _) in table.items()))

    lines[summary_at:summary_at] = findings(payload["tasks"])
    if args.ptbxl:
        dataset, y = ptbxl_superclasses(args.ptbxl)
        X_ptb, _, ptb_embedder = embed(dataset, args.model)
        folds = [(np.flatnonzero(dataset.metadata["strat_fold"] != f), np.flatnonzero(dataset.metadata["strat_fold"] == f))
                 for f in sorted(dataset.metadata["strat_fold"].unique())]  # fmt: skip
        curve = layer_probe(X_ptb, y, cv=folds, fusions=("ppa", "pma"), layer_spec=ptb_embedder.layer_spec_,
                            random_state=args.seed)
        plot_layer_probe(curve, path=DOCS / "layers_ptbxl.png", title="PTB-XL superclasses")
        payload["ptbxl"] = curve.to_dict()
        lines += ["## PTB-XL diagnostic superclasses (strat_fold CV)", "", "| representation | macro AUC |", "|---|---|"]
        lines += [f"| {name} | {row['mean']:.3f} ± {row['std']:.3f} |" for name, row in curve.iterrows()] + [""]

    analyses(X, ready, embedder, targets["hypertrophy"], args.seed, lines)
    (DOCS / "reproduce.md").write_text("\n".join(lines) + "\n")
    write_results("reproduce", payload, "\n".join(lines), timing=False)
    print(f"wrote {DOCS / 'reproduce.md'} ({seconds:.0f} s to embed)")


if __name__ == "__main__":
    main()
