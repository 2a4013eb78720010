"""``ecgsoup evaluate``: the nested-CV verdict of a linear probe for a store or an input."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ecgsoup.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    CLIError,
    WarningSummary,
    check_positive,
    locked_output,
    output_folder,
)
from ecgsoup.cli.embed import add_model_options, refuse_options_for_a_store, run_embedding
from ecgsoup.targets import (
    AUTO_FOLDS,
    ID_COLUMNS,
    REGRESSION_MIN_VALUES,
    SEPARATORS,
    label_splits,
    make_target,
    normal_id,
    parse_label_cell,
)

__all__ = ["add_parser", "run"]

_CLINICAL_AUTO_MAX = 2000  # more records: the features take minutes, so --clinical yes asks for them
# PMA's trained gate needs a few hundred records: on 60 it scores below PPA.
_PMA_MIN_RECORDS = 300


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="nested-CV verdict of a linear probe on every layer and fusion, with intervals, for a store or input",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Cross-validate the probe (standardisation + logistic regression, C=1; ridge regression for "
        "a continuous target) on every layer and on the fusions, choose the representation by inner CV inside "
        "each training fold (nested CV), and report that choice's out-of-fold metric with a bootstrap 95 % "
        "interval over records. The per-layer table follows; its best row was chosen on the folds that score "
        "it (optimistic). The parsed task is printed before anything is fitted. With --out: predictions.csv, "
        "roc.png (calibration.png for regression), operating_points.csv, verdict.csv, methods.md, "
        "layer_probe.csv and layer_probe.png.",
    )
    p.add_argument("input", help="a store written by `ecgsoup embed`, or an input it accepts "
                                 "(embedded first, into OUT/embeddings.npz when --out is given)")  # fmt: skip
    p.add_argument("--labels", required=True, help="CSV with one row per record")
    p.add_argument("--target", required=True, help="the label column")
    p.add_argument("--id-column", default=None,
                   help=f"record identifier column (None: the first of {', '.join(ID_COLUMNS)})")  # fmt: skip
    p.add_argument("--task", choices=["binary", "multiclass", "multilabel", "regression"], default=None,
                   help=f"None: regression for a numeric column with more than {REGRESSION_MIN_VALUES} distinct "
                        "values; binary with --positive or two values (or one value and empty cells); "
                        "multilabel when cells hold a separator; else multiclass")  # fmt: skip
    p.add_argument("--positive", default=None,
                   help="binary: the positive label, matched as a whole cell or as one label of a multi-label "
                        "cell (None: the other value when one of two is an obvious negative such as no, 0, "
                        "false, normal; the non-empty cells when the column has empty ones)")  # fmt: skip
    p.add_argument("--separator", default="auto",
                   help=f"separator of the labels inside a cell; 'auto' detects one of "
                        f"{' '.join(SEPARATORS)} and refuses to guess when several occur")  # fmt: skip
    p.add_argument("--empty", choices=["drop", "negative"], default="drop",
                   help="records whose label cell is empty: leave them out, or keep them as negatives "
                        "(no label; a class of their own for multiclass)")  # fmt: skip
    p.add_argument("--min-count", type=int, default=0, metavar="N",
                   help="multilabel: drop labels with fewer than N records; multiclass: drop the records "
                        "of classes with fewer than N (0: keep all)")  # fmt: skip
    p.add_argument("--cv", type=int, default=5, help="folds (when neither --folds nor --groups applies)")
    p.add_argument("--repeats", type=int, default=1, help="repetitions of the folds (not with --folds)")
    p.add_argument("--folds", default=None, metavar="COLUMN",
                   help=f"a labels column holding each record's test fold (None: {AUTO_FOLDS!r} when "
                        "the labels have it, as PTB-XL's do; 'none': never)")  # fmt: skip
    p.add_argument("--groups", default=None, metavar="COLUMN",
                   help="a labels column of groups (e.g. patient_id) that never straddle a train/test split")
    p.add_argument("--inner-cv", type=int, default=3,
                   help="inner folds inside each training fold that choose the representation (and threshold)")
    p.add_argument("--fusions", default="auto",
                   help=f"comma-separated fusion rows: ppa, pma, or 'none'; 'auto': ppa, and pma from "
                        f"{_PMA_MIN_RECORDS} records (its trained gate needs a few hundred)")  # fmt: skip
    p.add_argument("--threshold", type=float, action="append", default=None, metavar="T",
                   help="binary: also report sensitivity and specificity at this probability (repeatable)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the records for intervals")
    p.add_argument("--clinical", choices=["auto", "yes", "none"], default="auto",
                   help="a baseline row of clinical ECG features (heart rate, intervals, axis ...) on the same "
                        "folds, from the records read again (the input, or the store's source); 'auto': up to "
                        f"{_CLINICAL_AUTO_MAX} records (1,625 PTB-XL records take about 90 s on two cores)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seeds the folds, PMA and the bootstrap")
    p.add_argument("--out", default=None, help="directory for the report files (see above)")
    add_model_options(p)
    p.set_defaults(func=run)


def _load_embeddings(args):
    """``(X, record_ids, attrs, n_failed, layer_spec)`` from a store, or by embedding the input."""
    from ecgsoup.store import StoreDamageWarning, StoreError, is_store, open_store

    path = Path(args.input).expanduser()
    if not path.exists():
        raise CLIError(f"{path}: no such file or folder.")
    if is_store(path):
        refuse_options_for_a_store(args, path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # pending records are reported below instead
                stored = open_store(path)
        except (StoreError, OSError) as error:
            raise CLIError(str(error)) from None
        for warning in caught:
            if issubclass(warning.category, StoreDamageWarning):  # damaged records are left out: say which
                print(f"ecgsoup evaluate: {warning.message}", file=sys.stderr)
        if stored.attrs["n_pending"]:
            print(f"ecgsoup evaluate: {path} has {stored.attrs['n_pending']} records not embedded yet; "
                  "using the embedded ones", file=sys.stderr)  # fmt: skip
        return stored.X, stored.record_ids, stored.attrs, stored.attrs["n_failed"], stored.layer_spec
    with WarningSummary(args.command):
        if args.out:
            summary = run_embedding(args, path, Path(args.out) / "embeddings.npz", collapse=True)
            stored = open_store(summary.store)
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="ecgsoup-evaluate-") as tmp:
                summary = run_embedding(args, path, Path(tmp) / "embeddings.npz", collapse=True)
                stored = open_store(summary.store)
    if not stored.record_ids:
        raise CLIError(f"no record of {path} could be embedded ({summary.n_failed} failed).")
    return stored.X, stored.record_ids, stored.attrs, summary.n_failed, stored.layer_spec


def _read_labels(args):
    """``({record id: row dict}, id column)`` of the labels CSV, its columns checked."""
    import pandas as pd

    path = Path(args.labels).expanduser()
    if not path.is_file():
        raise CLIError(f"--labels {path}: no such file.")
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CLIError(f"--labels {path}: not a readable CSV ({error}).") from None
    columns = list(table.columns)
    other = next((sep for sep in (";", "\t") if len(columns) == 1 and sep in columns[0]), None)
    if other is not None:
        name = "semicolon" if other == ";" else "tab"
        raise CLIError(f"--labels {path} reads as one column {columns[0][:50]!r}: its fields are {name}-separated; "
                       f"save it with commas, e.g. pandas.read_csv(path, sep={other!r}, dtype=str)"
                       ".to_csv('labels.csv', index=False).")  # fmt: skip
    if args.target not in columns:
        raise CLIError(f"--target {args.target!r} is not a column of {path}; its columns are {columns}.")
    for option, column in (("--folds", args.folds), ("--groups", args.groups)):
        if column is not None and column.lower() != "none" and column not in columns:
            raise CLIError(f"{option} {column!r} is not a column of {path}; its columns are {columns}.")
    if args.groups is not None and args.folds is not None and args.folds.lower() != "none":
        raise CLIError("--folds and --groups both choose the splits; pass one of them.")
    id_column = args.id_column or next((c for c in ID_COLUMNS if c in columns), None)
    if id_column is None or id_column not in columns:
        raise CLIError(
            f"{path} has no record identifier column ({args.id_column or ', '.join(ID_COLUMNS)}); "
            f"pass --id-column (columns: {columns})."
        )
    from ecgsoup.io import check_ids

    try:
        check_ids(table[id_column], f"--labels {path}: column {id_column!r}")  # empty or repeated ids
    except ValueError as error:
        raise CLIError(str(error)) from None
    ids = [normal_id(v) for v in table[id_column]]
    if len(set(ids)) < len(ids):
        raise CLIError(f"{path}: column {id_column!r} holds duplicate identifiers.")
    rows = table.apply(lambda column: column.astype(str).str.strip()).to_dict("records")
    return dict(zip(ids, rows)), id_column


# Cells that mean "no value" in exported tables: they are empty labels, not a class of their own.
def run(args) -> int:
    check_positive("--cv", args.cv)
    check_positive("--repeats", args.repeats)
    check_positive("--bootstrap", args.bootstrap)
    if args.cv < 2:
        raise CLIError("--cv must be at least 2.")
    if args.inner_cv < 2:
        raise CLIError(f"--inner-cv must be at least 2, got {args.inner_cv}.")
    if args.min_count < 0:
        raise CLIError(f"--min-count must be 0 (keep every label) or more, got {args.min_count}.")
    for value in args.threshold or ():
        if not 0 <= value <= 1:
            raise CLIError(f"--threshold {value:g}: a threshold is a probability between 0 and 1.")
    choice = args.fusions.strip().lower()
    fusions = "auto" if choice == "auto" else [] if choice == "none" else [
        f.strip().lower() for f in args.fusions.split(",") if f.strip()]  # fmt: skip
    unknown = [] if fusions == "auto" else sorted(set(fusions) - {"ppa", "pma"})
    if unknown:
        raise CLIError(f"--fusions: unknown {unknown}; use ppa, pma, both (ppa,pma), auto or none.")
    table, id_column = _read_labels(args)  # checked before any embedding work
    if args.out is None:
        return _evaluate(args, table, id_column, fusions)
    # The output folder is checked, and held, before anything is computed.
    out = output_folder("--out", args.out)
    from ecgsoup.report import REPORT_FILES

    for name in REPORT_FILES:
        if (out / name).is_dir():
            raise CLIError(f"--out {out}: {name} there is a folder; remove it or choose another --out.")
    with locked_output("--out", out, "evaluate"):
        return _evaluate(args, table, id_column, fusions)


def _auto_fusions(fusions, n_records: int) -> list:
    """``--fusions auto``: PPA always, PMA from a few hundred records; says which and why."""
    if fusions != "auto":
        return fusions
    if n_records >= _PMA_MIN_RECORDS:
        print(f"fusions: PPA and PMA ({n_records} records; PMA runs from {_PMA_MIN_RECORDS})")
        return ["ppa", "pma"]
    print(f"fusions: PPA; PMA left out: {n_records} records, and its trained gate needs a few hundred "
          f"(it runs from {_PMA_MIN_RECORDS} records; --fusions ppa,pma runs it anyway)")  # fmt: skip
    return ["ppa"]


def _evaluate(args, table, id_column, fusions) -> int:
    """:func:`run` once its options, labels and output folder are checked."""
    from ecgsoup.evaluate import plot_layer_probe
    from ecgsoup.nested import nested_probe

    X, record_ids, attrs, n_failed, layer_spec = _load_embeddings(args)
    keys = [normal_id(r) for r in record_ids]
    rows = [i for i, key in enumerate(keys) if key in table]
    if not rows:
        raise CLIError(
            f"no embedded record has a row in {args.labels}: store ids look like {record_ids[:3]}, "
            f"{id_column!r} values like {list(table)[:3]}. Pass --id-column to choose the column."
        )
    missing = len(keys) - len(rows)
    if missing:
        print(f"ecgsoup evaluate: {missing} embedded records have no label row and are left out",
              file=sys.stderr)  # fmt: skip
    label_rows = [table[keys[i]] for i in rows]
    y, keep, task, description, report, label_names = _target(args, label_rows, id_column)
    rows, label_rows = [rows[k] for k in keep], [label_rows[k] for k in keep]
    if task == "binary":
        counts = [int((y == 0).sum()), int(y.sum())]
        if min(counts) < args.cv:
            raise CLIError(f"{description}: each class needs at least --cv {args.cv} records. Use fewer "
                           "folds or more records.")  # fmt: skip
    if args.threshold and task != "binary":
        raise CLIError(f"--threshold applies to a binary target; this one is {task}.")
    if len(rows) < 2 * args.cv:
        raise CLIError(f"{len(rows)} records for --cv {args.cv}: too few to cross-validate; use fewer folds.")
    if task == "multilabel" and not args.min_count:
        rare = int((y.sum(axis=0) < args.cv).sum())
        if rare:
            report.append(f"  {rare} labels have fewer records than --cv {args.cv} folds (their AUC is 0.5 in "
                          f"folds without them); --min-count {args.cv} drops them")  # fmt: skip
    try:
        cv, split_description = label_splits(label_rows, y, task, folds=args.folds, groups=args.groups, cv=args.cv,
                                             n_repeats=args.repeats, random_state=args.seed)  # fmt: skip
    except ValueError as error:
        raise CLIError(str(error)) from None
    groups = None if args.groups is None else [row[args.groups] for row in label_rows]
    X = X[rows]
    print("\n".join(report))
    print(f"{len(rows)} records, target {description}, {split_description}, "
          f"model {attrs['model_name']} ({attrs['model_sha256'][:12]})", flush=True)  # fmt: skip
    fusions = _auto_fusions(fusions, len(rows))
    baselines = _clinical(args, attrs, [record_ids[i] for i in rows])
    try:
        with WarningSummary(args.command):
            result = nested_probe(X, y, task=task, cv=cv, n_repeats=args.repeats, inner_cv=args.inner_cv,
                                  fusions=fusions, layer_spec=layer_spec, groups=groups, baselines=baselines,
                                  thresholds=tuple(args.threshold or ()), n_bootstrap=args.bootstrap,
                                  random_state=args.seed, progress=lambda line: print(line, flush=True))  # fmt: skip
    except ValueError as error:
        raise CLIError(f"the probe failed: {str(error).splitlines()[0]}") from None
    _print_result(result, attrs)
    if args.out:
        from ecgsoup.report import write_report

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result.table.to_csv(out / "layer_probe.csv")
        title = f"{description}, n={len(rows)}, {attrs['model_name']}"
        ylabel = ("R²" if task == "regression" else "macro ROC AUC") + " (mean ± std over folds)"
        plot_layer_probe(result.table, path=out / "layer_probe.png", title=title, ylabel=ylabel,
                         baselines=result.baselines)
        written = write_report(
            result, out, record_ids=[record_ids[i] for i in rows], model_name=attrs["model_name"],
            model_sha256=attrs["model_sha256"], contract=attrs.get("model_contract"),
            n_layers=attrs.get("n_layers"), target=f"the target {args.target!r}", target_name=args.target, folds=split_description,
            label_names=label_names, title=title,
        )  # fmt: skip
        print(f"wrote {', '.join(p.name for p in [out / 'layer_probe.csv', out / 'layer_probe.png', *written])} "
              f"in {out}")  # fmt: skip
    return EXIT_PARTIAL if n_failed else EXIT_OK


def _target(args, label_rows, id_column):
    """``(y, keep, task, description, report, label_names)`` of ``--target`` for the labelled records."""
    cells = []
    for row in label_rows:
        try:
            cells.append(parse_label_cell(row[args.target], separator=args.separator))
        except ValueError as error:
            raise CLIError(f"--target {args.target!r}, record {row.get(id_column)}: {error} Write it as "
                           "{'NORM': 100.0} or NORM;SR.") from None  # fmt: skip
    try:
        target = make_target(cells, target=args.target, task=args.task, positive=args.positive,
                             separator=args.separator, empty=args.empty, min_count=args.min_count)  # fmt: skip
    except ValueError as error:
        raise CLIError(str(error)) from None
    return target.y, target.keep, target.task, target.description, target.report, target.label_names


def _clinical(args, attrs, record_ids) -> dict:
    """``{"clinical features": F}`` when the records can be read again, else ``{}`` (and why, in one line)."""
    if args.clinical == "none":
        return {}
    if args.clinical == "auto" and len(record_ids) > _CLINICAL_AUTO_MAX:
        print(f"clinical baseline: not computed for {len(record_ids)} records (over {_CLINICAL_AUTO_MAX}, it takes "
              "minutes; --clinical yes computes it)")  # fmt: skip
        return {}
    from ecgsoup.report import clinical_baseline

    source = Path(attrs.get("source") or args.input)
    if not source.exists():
        print(f"clinical baseline: not computed ({source.name}, the embedded input, is not at hand; "
              "--clinical none hides this line)")  # fmt: skip
        return {}
    try:
        F, note = clinical_baseline(source, record_ids, derive_leads=bool(attrs.get("derived_leads")))
    except (ValueError, OSError) as error:
        F, note = None, str(error).splitlines()[0]
    if F is None:
        print(f"clinical baseline: not computed ({note})")
        return {}
    print(f"clinical baseline: {note}")
    return {"clinical features": F}


def _print_result(result, attrs) -> None:
    """The per-representation table, then the nested verdict and how to read the best row."""
    shown = result.table[["mean", "std", "pooled", "pooled_low", "pooled_high"]].rename(
        columns={"mean": "mean_over_folds", "std": "std", "pooled": "pooled", "pooled_low": "ci_low",
                 "pooled_high": "ci_high"})  # fmt: skip
    print(shown.to_string(float_format=lambda v: f"{v:.4f}"))
    n_layers = attrs["n_layers"]
    last = result.table.index[n_layers - 1]
    print(f"last layer: {last} ({result.table.loc[last, 'mean']:.4f} mean over folds)")
    print(result.summary())
