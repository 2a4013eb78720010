"""Is the pretrained default model worth anything?  Linear probes on LUDB.

Compares, on the same folds, macro ROC-AUC of a standardised logistic
regression on

(a) the bundled pretrained default model (last layer, best single layer, PPA),
(b) the same architecture with random weights (same rows),
(c) a handcrafted baseline: the clinical measurements of
    :class:`ecgsoup.ECGFeatures` (neurokit2 rhythm, HRV, intervals, axis,
    quality; NaNs imputed with the training median),

for the three LUDB tasks of :mod:`ecgsoup.tasks`, with repeated stratified
5-fold cross-validation.  "Best single layer" is chosen on the same folds it
is scored on, so it is optimistic; it is reported to show the layer curve,
not as a fair number.  Writes ``benchmarks/results/quality.{json,md}``.

Run:  .venv/bin/python benchmarks/quality.py [--repeats 3] [--model default]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_data_path, timed, write_results  # noqa: E402

from ecgsoup import ECGFeatures, ECGPreprocessor, LayerwiseEmbedder, load_sample  # noqa: E402
from ecgsoup.evaluate import layer_probe, macro_auc_scorer  # noqa: E402
from ecgsoup.fusion import PPA  # noqa: E402
from ecgsoup.hybrid import balanced_columns  # noqa: E402
from ecgsoup.tasks import LUDB_TASKS, ludb_targets  # noqa: E402


def embed(sample, model: str) -> tuple[np.ndarray, LayerwiseEmbedder]:
    pre = ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names, model=model)
    embedder = LayerwiseEmbedder(model=model)
    return embedder.fit_transform(pre.fit_transform(sample.X)), embedder


def handcrafted(sample, n_jobs: int = 1) -> tuple[np.ndarray, str, list[str]]:
    """Clinical features from the 500 Hz originals when the shared data is there (their best input).

    LUDB's amplitudes are range-normalised by its publisher, so ``units="normalized"``: no
    amplitude columns.  Returns the features, where they came from and their names.
    """
    try:
        data = np.load(shared_data_path() / "ludb" / "ludb_12lead_500hz.npz")
        x, fs, names, source = data["x"], float(data["fs"]), [str(n) for n in data["lead_names"]], "LUDB 500 Hz"
        assert list(data["record_id"]) == list(sample.record_ids)
    except SystemExit:
        x, fs, names, source = sample.X, sample.sampling_rate, sample.lead_names, "bundled 100 Hz sample"
    features = ECGFeatures(sampling_rate=fs, lead_names=names, units="normalized", n_jobs=n_jobs)
    return features.fit_transform(x), source, list(features.get_feature_names_out())


def backbone_rows(result: pd.DataFrame) -> dict:
    layers = result.loc[[i for i in result.index if i.startswith("layer_")]]
    best = layers["mean"].idxmax()
    last = layers.index[-1]
    return {
        "last layer": (result.loc[last, "mean"], result.loc[last, "std"], ""),
        "best single layer": (result.loc[best, "mean"], result.loc[best, "std"], f" ({best.replace('_', ' ')})"),
        "PPA": (result.loc["ppa", "mean"], result.loc["ppa", "std"], ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="the pretrained model to assess")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of 5-fold CV")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-name", default="quality", help="results/<name>.{json,md}")
    args = parser.parse_args()

    sample = load_sample()
    targets = ludb_targets(sample.metadata)
    seconds_pre, (X_pre, emb_pre) = timed(embed, sample, args.model)
    X_rand, emb_rand = embed(sample, "random:" + emb_pre.config_.name)
    seconds_hc, (X_hc, hc_source, hc_names) = timed(handcrafted, sample)
    meta = emb_pre.model_.metadata
    print(f"pretrained: {emb_pre.config_.name} objective={meta.get('objective')} ({seconds_pre:.1f} s to embed)")
    print(f"handcrafted: {len(hc_names)} ECGFeatures columns from {hc_source} ({seconds_hc:.1f} s)")

    X_ppa = PPA(layer_spec=emb_pre.layer_spec_).fit_transform(X_pre)
    hc_probe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=2000))
    rows, raw = [], {}
    for task, y in targets.items():
        folds = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=args.repeats, random_state=args.seed).split(X_pre, y))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            pre = layer_probe(X_pre, y, cv=folds, fusions=("ppa",), layer_spec=emb_pre.layer_spec_,
                              random_state=args.seed)
            rand = layer_probe(X_rand, y, cv=folds, fusions=("ppa",), layer_spec=emb_rand.layer_spec_,
                               random_state=args.seed)
            hc = cross_val_score(hc_probe, X_hc, y, cv=folds, scoring=macro_auc_scorer)
            hybrid = cross_val_score(make_pipeline(balanced_columns([X_hc.shape[1], X_ppa.shape[1]]),
                                                   LogisticRegression(max_iter=2000)),
                                     np.hstack([X_hc, X_ppa]), y, cv=folds, scoring=macro_auc_scorer)  # fmt: skip
        raw[task] = {"pretrained": pre.to_dict(), "random": rand.to_dict(), "handcrafted": list(hc),
                     "hybrid": list(hybrid)}  # fmt: skip
        for name, result in (("pretrained", pre), ("random init", rand)):
            for rep, (mean, std, note) in backbone_rows(result).items():
                rows.append({"task": task, "features": f"{name}: {rep}", "mean": mean, "std": std, "note": note})
        rows.append({"task": task, "features": "handcrafted (ECGFeatures, neurokit2)", "mean": hc.mean(), "std": hc.std(), "note": ""})
        rows.append({"task": task, "features": "hybrid: ECGFeatures + pretrained PPA (blocks balanced)",
                     "mean": hybrid.mean(), "std": hybrid.std(), "note": ""})  # fmt: skip
        print(f"{task}: pretrained PPA {pre.loc['ppa', 'mean']:.3f}, random PPA {rand.loc['ppa', 'mean']:.3f}, "
              f"handcrafted {hc.mean():.3f}")  # fmt: skip

    table = pd.DataFrame(rows)
    wide = table.assign(cell=[f"{m:.3f} ± {s:.3f}{n}" for m, s, n in zip(table["mean"], table["std"], table["note"])])
    lines = ["| features | " + " | ".join(LUDB_TASKS) + " |", "|---" * (len(LUDB_TASKS) + 1) + "|"]
    for features in dict.fromkeys(wide["features"]):
        cells = [wide[(wide.task == t) & (wide.features == features)]["cell"].iloc[0] for t in LUDB_TASKS]
        lines.append(f"| {features} | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    markdown = (
        "# Linear-probe quality on LUDB: pretrained vs random vs handcrafted\n\n"
        f"Macro ROC-AUC, mean ± std over {5 * args.repeats} folds (5-fold stratified CV x {args.repeats} "
        "repeats, same folds for every row). Probe: standardised logistic regression. "
        f"Pretrained model: `{emb_pre.config_.name}` ({meta.get('objective')}, sha256 "
        f"{emb_pre.fingerprint_[:12]}). Handcrafted: the {len(hc_names)} `ECGFeatures` columns from {hc_source}. "
        "'Best single layer' is picked on the scored folds (optimistic).\n\n" + md + "\n"
    )
    write_results(args.results_name, {"model": args.model, "model_sha256": emb_pre.fingerprint_,
                                      "table": rows, "raw": raw, "handcrafted_source": hc_source,
                                      "handcrafted_features": hc_names}, markdown, timing=False)  # fmt: skip
    print(markdown)


if __name__ == "__main__":
    main()
