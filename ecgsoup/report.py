"""What ``ecgsoup evaluate --out`` writes for a paper: predictions, curves, operating points, methods.

:func:`write_report` turns a :class:`ecgsoup.nested.NestedProbeResult` into

* ``predictions.csv``: one row per record: its outer test fold, its label,
  the representation chosen for its fold and the out-of-fold score of every
  representation (and baseline);
* ``roc.png`` (classification): the ROC curve of the chosen representation
  and of each baseline, with a bootstrap band; ``calibration.png``
  (regression): predicted against observed values;
* ``operating_points.csv`` (binary): sensitivity and specificity with
  intervals at the Youden threshold chosen inside the training folds and at
  the thresholds given;
* ``verdict.csv`` and ``methods.md``: the headline with its interval, and one
  paragraph a clinician can adapt for a methods section.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["REPORT_FILES", "clinical_baseline", "methods_paragraph", "plot_calibration", "plot_roc", "write_report"]

#: Files :func:`write_report` may write (checked before a run so that none is a folder).
REPORT_FILES = ("predictions.csv", "roc.png", "calibration.png", "operating_points.csv", "verdict.csv",
                "methods.md", "layer_probe.csv", "layer_probe.png")  # fmt: skip

_BAND_RESAMPLES = 200  # bootstrap curves drawn for a figure's band (the intervals use the full count)


def _id_key(value):
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def clinical_baseline(source, record_ids, *, derive_leads=False):
    """Clinical ECG features (:class:`~ecgsoup.features.ECGFeatures`) of the given records, read again from ``source``.

    Returns ``(F, note)``: ``F`` has one row per id of ``record_ids``, or is
    ``None`` when some record cannot be found or read, with ``note`` saying
    why.  Records are grouped by sampling rate, leads, units and length, so a
    folder of mixed exports works.
    """
    import warnings

    from ecgsoup.features import ECGFeatures
    from ecgsoup.io import read_records

    wanted = {_id_key(r): i for i, r in enumerate(record_ids)}
    groups: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in read_records(source, on_error="skip", derive_leads=derive_leads):
            position = wanted.get(_id_key(record.record_id))
            if position is None:
                continue
            units = record.units if record.units in ("mV", "uV") else "normalized"
            key = (float(record.fs), tuple(record.lead_names), units, record.signal.shape[0])
            groups.setdefault(key, []).append((position, np.asarray(record.signal, dtype=np.float32)))
        found = sum(len(items) for items in groups.values())
        if found < len(record_ids):
            return None, (f"{len(record_ids) - found} of {len(record_ids)} records were not found in "
                          f"{Path(source).name}")  # fmt: skip
        F = None
        for (fs, leads, units, _), items in groups.items():
            extractor = ECGFeatures(sampling_rate=fs, lead_names=list(leads), units=units)
            values = extractor.fit_transform(np.stack([signal for _, signal in items]))
            values = np.asarray(values, dtype=float)
            if F is None:
                F = np.full((len(record_ids), values.shape[1]), np.nan)
            F[[position for position, _ in items]] = values
    return F, f"{F.shape[1]} clinical features from {found} records"


def _label_text(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ";".join(str(v) for v in value)
    return str(value)


def predictions_table(result, record_ids, label_names=None) -> pd.DataFrame:
    """One row per record: ``record_id``, ``fold``, ``label``, ``chosen_representation`` and the scores."""
    task = result.task
    columns = {"record_id": list(record_ids), "fold": result.fold + 1}
    if task == "multilabel":
        names = list(label_names) if label_names is not None else [str(i) for i in range(result.y.shape[1])]
        columns["label"] = [";".join(n for n, v in zip(names, row) if v) for row in result.y]
    else:
        names = [str(c) for c in result.classes]
        columns["label"] = [_label_text(v) for v in result.y]
    chosen = np.empty(len(result.y), dtype=object)
    for k, name in enumerate(result.chosen):
        chosen[result.fold == k] = name
    columns["chosen_representation"] = chosen

    def add(prefix, scores):
        scores = np.asarray(scores)
        if scores.ndim == 1:
            columns[prefix] = scores
        else:
            for j, name in enumerate(names):
                columns[f"{prefix}[{name}]"] = scores[:, j]

    add("chosen", result.chosen_scores)
    if task == "binary":
        thresholds = np.asarray(result.settings["fold_thresholds"])
        columns["youden_threshold"] = thresholds[result.fold]
        columns["called_positive"] = (result.chosen_scores >= columns["youden_threshold"]).astype(int)
    for name, scores in result.scores.items():
        add(name, scores)
    return pd.DataFrame(columns)


def _truth(result):
    from ecgsoup.nested import truth_matrix

    return truth_matrix(result.y, result.task, result.classes)


def _macro_roc(Y, S, grid):
    """Mean true-positive rate over the classes with both label values, on a grid of false-positive rates."""
    from sklearn.metrics import roc_curve

    curves = []
    for j in range(Y.shape[1]):
        if Y[:, j].min() == Y[:, j].max():
            continue
        fpr, tpr, _ = roc_curve(Y[:, j], S[:, j])
        curves.append(np.interp(grid, fpr, tpr))
    return np.mean(curves, axis=0) if curves else np.full(len(grid), np.nan)


def plot_roc(result, path=None, *, title=None, random_state=0):
    """ROC of the chosen representation and the baselines, each with a 95 % bootstrap band.

    For a multiclass or multi-label target the curve is the macro average
    (mean true-positive rate over the classes, one-vs-rest).  The legend sits
    beside the axes so that it never covers a curve.
    """
    from matplotlib.figure import Figure

    Y = _truth(result)
    grid = np.linspace(0, 1, 101)
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, len(Y), size=(_BAND_RESAMPLES, len(Y)))
    figure = Figure(figsize=(6.4, 7.0), layout="constrained")
    ax = figure.subplots()
    value, low, high = result.headline
    curves = [(f"chosen by nested CV: {result.metric} {value:.3f} [{low:.3f}, {high:.3f}]", result.chosen_scores,
               "tab:blue")]  # fmt: skip
    colours = ["tab:green", "tab:purple", "tab:brown", "tab:gray"]
    for i, name in enumerate(result.baselines):
        row = result.table.loc[name]
        curves.append((f"{name}: {row['pooled']:.3f} [{row['pooled_low']:.3f}, {row['pooled_high']:.3f}]",
                       result.scores[name], colours[i % len(colours)]))  # fmt: skip
    for label, scores, colour in curves:
        S = np.asarray(scores, dtype=float)
        S = S[:, None] if S.ndim == 1 else S
        ax.plot(grid, _macro_roc(Y, S, grid), color=colour, linewidth=2, label=label)
        band = np.array([_macro_roc(Y[d], S[d], grid) for d in draws])
        with np.errstate(invalid="ignore"):
            lo, hi = np.nanpercentile(band, [2.5, 97.5], axis=0)
        ax.fill_between(grid, lo, hi, color=colour, alpha=0.15, linewidth=0)
    ax.plot([0, 1], [0, 1], color="tab:red", linewidth=0.8, alpha=0.6, label="chance")
    kind = "" if result.task == "binary" else "macro-average "
    ax.set_xlabel(f"1 - specificity ({kind}false-positive rate)")
    ax.set_ylabel(f"sensitivity ({kind}true-positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_title(textwrap.fill(title or "Out-of-fold ROC, pooled over the test folds", 70), fontsize=10)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
                  title=f"{result.metric} [95 % CI]; band: 95 % bootstrap interval", title_fontsize=8)  # fmt: skip
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def plot_calibration(result, path=None, *, title=None, target="target"):
    """Regression: out-of-fold predictions against the observed values, with the identity line and bin means."""
    from matplotlib.figure import Figure

    y, p = np.asarray(result.y, float), np.asarray(result.chosen_scores, float)
    figure = Figure(figsize=(6.4, 6.4), layout="constrained")
    ax = figure.subplots()
    ax.scatter(p, y, s=14, alpha=0.6, color="tab:blue", label="one record (out-of-fold prediction)")
    edges = np.unique(np.quantile(p, np.linspace(0, 1, min(11, max(len(p) // 5, 2)))))
    if len(edges) > 2:
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
        means = [(p[which == b].mean(), y[which == b].mean()) for b in range(len(edges) - 1) if (which == b).any()]
        ax.plot(*zip(*means), "o-", color="black", label="mean observed per prediction bin")
    span = [min(y.min(), p.min()), max(y.max(), p.max())]
    ax.plot(span, span, color="tab:red", linewidth=1, label="identity (perfect calibration)")
    r2, mae = result.verdict.loc["R²"], result.verdict.loc["MAE"]
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel(f"observed {target}")
    ax.set_title(textwrap.fill(title or "Calibration of the out-of-fold predictions", 70), fontsize=10)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
              title=f"R² {r2['value']:.3f} [{r2['low']:.3f}, {r2['high']:.3f}]\n"
                    f"MAE {mae['value']:.3g} [{mae['low']:.3g}, {mae['high']:.3g}]", title_fontsize=8)  # fmt: skip
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def _contract_text(contract: dict | None) -> str:
    if not contract:
        return "the model's own preprocessing"
    parts = [f"resampled to {contract.get('sampling_rate'):g} Hz" if contract.get("sampling_rate") else None,
             f"{len(contract['lead_names'])} leads ({', '.join(contract['lead_names'])})"
             if contract.get("lead_names") else None,
             f"windows of {contract['window']} samples" if contract.get("window") else None,
             f"band-pass {contract['bandpass'][0]}-{contract['bandpass'][1]} Hz" if contract.get("bandpass") else None,
             f"each window normalised ({contract['window_norm'].replace('_', ' ')})"
             if contract.get("window_norm") else None]  # fmt: skip
    return ", ".join(p for p in parts if p)


def methods_paragraph(result, *, model_name, model_sha256, contract=None, n_layers=None, target="the target",
                      folds="", version=None) -> str:  # fmt: skip
    """One paragraph for a methods section, from what was run (every number filled in)."""
    from ecgsoup._version import __version__

    value, low, high = result.headline
    fusions = result.settings.get("fusions") or []
    fusion_text = (" and on their fusion" + ("s " if len(fusions) > 1 else " ")
                   + ", ".join(f.upper() if f in ("ppa", "pma") else f for f in fusions)) if fusions else ""  # fmt: skip
    names = {"ppa": "PPA, the mean of the block outputs through the model's final normalisation",
             "pma": "PMA, a gate over the layers trained on the training records"}
    explained = "; ".join(names[f] for f in fusions if f in names)
    layers = f"each of the model's {n_layers} layers" if n_layers else "each layer"
    baseline = (f" The same probe on {', '.join(result.baselines)} was scored on the same folds as a baseline."
                if result.baselines else "")  # fmt: skip
    threshold = (" The decision threshold of each test fold was the one maximising Youden's J "
                 "(sensitivity + specificity - 1) on the inner out-of-fold scores of its training records; "
                 "sensitivity and specificity are reported at that threshold." if result.task == "binary" else "")
    import re

    match = re.match(r"^(\d+)-fold CV x (\d+)(.*)$", folds or "")
    if match:  # the command line's short form, spelled out
        k, repeats, rest = int(match.group(1)), int(match.group(2)), match.group(3)
        kind = "" if result.task in ("multilabel", "regression") else "stratified "
        folds = (f"{kind}{k}-fold cross-validation (shuffled, seed {result.settings['random_state']}"
                 + (f", repeated {repeats} times" if repeats > 1 else "") + f"){rest}")  # fmt: skip
    extra = ""
    if result.task == "regression":
        mae = result.verdict.loc["MAE"]
        extra = f" The mean absolute error was {mae['value']:.3g} (95 % CI {mae['low']:.3g}-{mae['high']:.3g})."
    return (
        f"ECGs were embedded with the frozen encoder {model_name} (weights SHA-256 {model_sha256}) after its "
        f"preprocessing contract ({_contract_text(contract)}); no weight of the encoder was trained on these "
        f"labels. For {target} ({result.task}, {len(result.y)} records), a probe — {result.settings['probe']} — "
        f"was fitted on {layers}{fusion_text}{' (' + explained + ')' if explained else ''}. Performance was "
        f"estimated by {folds or str(result.settings['n_folds']) + '-fold cross-validation'}; inside each "
        f"training fold, the representation was chosen by {result.settings['inner_cv']}-fold inner "
        f"cross-validation on the training records only, so the test records never influenced the "
        f"choice.{threshold}{baseline} The metric is the {result.settings['metric']} of the out-of-fold "
        f"predictions pooled over the test folds: {value:.3f} (95 % CI {low:.3f}-{high:.3f}; percentile "
        f"bootstrap over records, {result.settings['n_bootstrap']} resamples, seed "
        f"{result.settings['random_state']}).{extra} Analyses used ecgsoup {version or __version__} "
        f"with scikit-learn."
    )


def write_report(result, out, *, record_ids, model_name, model_sha256, contract=None, n_layers=None,
                 target="the target", target_name="target", folds="", label_names=None,
                 title=None) -> list[Path]:  # fmt: skip
    """Write the report files of a nested probe into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    predictions = predictions_table(result, record_ids, label_names)
    predictions.to_csv(out / "predictions.csv", index=False, float_format="%.6g")
    written.append(out / "predictions.csv")
    result.verdict.to_csv(out / "verdict.csv")
    written.append(out / "verdict.csv")
    if result.task == "regression":
        plot_calibration(result, out / "calibration.png", title=title, target=target_name)
        written.append(out / "calibration.png")
    else:
        plot_roc(result, out / "roc.png", title=title, random_state=result.settings["random_state"])
        written.append(out / "roc.png")
    if len(result.operating_points):
        result.operating_points.to_csv(out / "operating_points.csv")
        written.append(out / "operating_points.csv")
    paragraph = methods_paragraph(result, model_name=model_name, model_sha256=model_sha256, contract=contract,
                                  n_layers=n_layers, target=target, folds=folds)  # fmt: skip
    (out / "methods.md").write_text("# Methods (adapt to your paper)\n\n" + paragraph + "\n")
    written.append(out / "methods.md")
    return written
