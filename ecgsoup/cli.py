"""The ``ecgsoup`` command line.

Each sub-command lives in a small ``_cmd_*`` function whose parser is added
by an ``_add_*`` function listed in ``_REGISTRARS``.  Exit statuses:

* ``0``: done;
* ``1``: ``embed`` / ``evaluate`` finished, but some records could not be
  embedded (each is listed on stderr and in the store);
* ``2``: a problem the user can fix (nonexistent path, unreadable input,
  unknown model, missing labels column, an ``--out`` that is not an ecgsoup
  store, a store another run is writing, ...), printed as one line, never a
  traceback;
* ``130``: interrupted (Ctrl-C): one line, ``interrupted: N of M records
  saved; run the same command again to resume`` for ``embed``, no traceback.
"""

from __future__ import annotations

import argparse
import re
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_PARTIAL = 2  # some records failed: bad input the user can fix, each one listed
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT (128 + 2)


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain an encoder with masked reconstruction (ST-MEM or IPA)")
    p.add_argument("--data", nargs="+", required=True, help="npz shards, WFDB folders or a PTB-XL root")
    p.add_argument("--val", nargs="+", help="validation data (default: a seeded --val-fraction of --data)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--config", default="ecgsoup-100hz-tiny", help="encoder configuration (see `ecgsoup info --configs`)")
    p.add_argument("--objective", choices=["st-mem", "ipa"], default="st-mem")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, best/, log.csv")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--base-lr", type=float, default=1.2e-3, help="per 256 samples")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=["auto", "bfloat16", "float32"], default="auto",
                   help="bf16 autocast or plain float32; 'auto' takes bf16 where the device has bf16 "
                   "instructions (recent GPUs, x86 CPUs with AVX-512 BF16 or AMX) and float32 elsewhere, "
                   "where bf16 is emulated and many times slower; may change on --resume")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop early (resume later)")
    p.add_argument("--keep-epochs", type=int, nargs="*", default=[],
                   help="also save the encoder after these epochs, to OUT/epoch-NNN/ (a scaling curve)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--export", help="also write the best encoder here as fp16 (e.g. a bundled model)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    import numpy as np

    from ecgsoup.backbones.stmem import get_config, load_model, save_model
    from ecgsoup.pretraining import PretrainSettings, load_pretraining_arrays, pretrain

    try:
        config = get_config(args.config)
    except (KeyError, ValueError) as error:
        raise CLIError(str(error)) from None
    settings = PretrainSettings(
        config=args.config, objective=args.objective, epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size, base_lr=args.base_lr, weight_decay=args.weight_decay,
        precision=args.precision, device=args.device, seed=args.seed, checkpoint_every=args.checkpoint_every,
        num_threads=args.threads, keep_epochs=tuple(args.keep_epochs),
    )  # fmt: skip
    try:
        train = load_pretraining_arrays(args.data, config)
        if args.val:
            val = load_pretraining_arrays(args.val, config)
        else:
            order = np.random.default_rng(args.seed).permutation(len(train))
            n_val = max(1, int(round(args.val_fraction * len(train))))
            val, train = train[order[:n_val]], train[order[n_val:]]
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error)) from None
    print(f"pretraining {args.config} ({args.objective}) on {len(train)} records, validating on {len(val)}")
    try:
        summary = pretrain(
            train, val, args.out, settings, resume=args.resume, max_steps=args.max_steps,
            progress=not args.quiet,
            metadata={"data": [str(p) for p in args.data], "n_train": len(train), "n_val": len(val),
                      "command": "ecgsoup " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["pretrain"] else None},
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error).splitlines()[0]) from None
    if args.export and summary["best_model"] is None:
        print("note: no epoch finished, so there is no best model to export yet", file=sys.stderr)
    elif args.export:
        best = load_model(Path(args.out) / "best")
        save_model(best, args.export, dtype="float16")
        summary["exported"] = args.export
    print(json.dumps(summary, indent=2))
    return 0



# --- shared options -----------------------------------------------------------------------


def _add_model_options(p) -> None:
    first = len(p._actions)
    p.add_argument("--model", default="default",
                   help="'default' (bundled model), a registered name (see `ecgsoup models`), a model "
                        "directory, '<family>:<path>' for an original file (hubert-ecg:, ecgfounder:, "
                        "stmem:), optionally ending in @<contract>, or 'random' / 'random:<name>' "
                        "(untrained, for tests and baselines)")  # fmt: skip
    from ecgsoup.store import DEFAULT_CHUNK_SIZE

    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32", help="forward-pass precision")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--device", default="cpu", help="torch device of the encoder: cpu, cuda, cuda:1, mps")
    p.add_argument("--lead-map", nargs="+", metavar="MODEL=DATA", default=None,
                   help="leads stored under other names, e.g. II=ECG2 V1=C1")  # fmt: skip
    p.add_argument("--sampling-rate", type=float, default=None, help="Hz of an .npz input without an 'fs' entry")
    p.add_argument("--ptbxl-rate", type=int, choices=[100, 500], default=100,
                   help="which copy of a PTB-XL root to read: records100/ or records500/")  # fmt: skip
    p.add_argument("--derive-leads", action="store_true",
                   help="compute the limb leads III, aVR, aVL, aVF a record lacks from its leads I and II "
                        "(8-lead exports); recorded in the store. Without it a missing lead fails the record")
    p.add_argument("--id-from", choices=["hash", "name"], default="hash",
                   help="record id of a hospital file (DICOM, XML, SCP-ECG, EDF): a hash of its bytes, or its "
                        "file name (which may carry a patient's name)")  # fmt: skip
    p.add_argument("--pad", choices=["error", "zeros", "edge"], default="error",
                   help="records shorter than the model window: fail them (error) or pad them")  # fmt: skip
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                   help="records per block: the unit of work and of resumption; a kill loses at most "
                        "one block (the default is seconds of work, about a minute on a slow CPU)")  # fmt: skip
    p.add_argument("--skip-poor-signals", action="store_true",
                   help="fail records that do not look like an ECG (all zero, a flat lead, clipping) instead "
                        "of embedding them with a quality note")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # What these options were left at: evaluate refuses the ones given for a store (see _given_for_a_store).
    p.set_defaults(embedding_defaults=[(a.option_strings[0], a.dest, a.default) for a in p._actions[first:]
                                       if a.dest != "quiet"])  # fmt: skip


def _given_for_a_store(args, path) -> None:
    """Refuse embedding options given with a store: they would be silently ignored (its own model is used)."""
    given = []
    for flag, dest, default in getattr(args, "embedding_defaults", []):
        value = getattr(args, dest, default)
        if value != default:
            shown = "" if value is True else " ".join(map(str, value)) if isinstance(value, list) else str(value)
            given.append(f"{flag} {shown}".strip())
    if given:
        options = " ".join(given)
        raise CLIError(f"{options}: {path} is a store, so its own model and settings are used and "
                       f"{'this option does' if len(given) == 1 else 'these options do'} nothing; embed again "
                       f"to change them (ecgsoup embed INPUT --out NEW_STORE {options}), then evaluate "
                       "the new store.")  # fmt: skip


def _parse_lead_map(pairs) -> dict | None:
    if not pairs:
        return None
    lead_map = {}
    for pair in pairs:
        model_lead, sep, data_lead = pair.partition("=")
        if not sep or not model_lead.strip() or not data_lead.strip():
            raise CLIError(f"--lead-map {pair!r}: expected MODEL_LEAD=DATA_LEAD, e.g. II=ECG2.")
        lead_map[model_lead.strip()] = data_lead.strip()
    return lead_map


def _output_folder(option: str, out) -> Path:
    """An output folder checked before any work: a folder (or a new name), and writable.

    A run that computes for minutes and then finds it cannot write its
    results loses them; the check makes a test file and removes it.
    """
    import tempfile

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"{option} {out} is an existing file, not a folder; choose a folder name.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ecgsoup-write-test-"):
            pass
    except OSError as error:
        raise CLIError(f"{option} {out}: cannot write there ({error.strerror or error}); choose a writable "
                       "folder.") from None  # fmt: skip
    return out


@contextlib.contextmanager
def _locked_output(option: str, out: Path, command: str):
    """Hold ``out``'s lock for the whole run: a second run writing the same files is refused at once."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / ".ecgsoup.lock"), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise CLIError(f"{option} {out} is being written by another ecgsoup {command} run; wait for it, or "
                       "choose another folder.") from None  # fmt: skip
    try:
        yield out
    finally:
        lock.release()


def _positive(name, value) -> None:
    if value is not None and value < 1:
        raise CLIError(f"{name} must be a positive number, got {value}.")


def _embed(args, source, out, *, limit=None, overwrite=False, scheduler=None, workers=None, fmt=None,
           collapse=False):  # fmt: skip
    """Run :func:`ecgsoup.store.embed_to_store`, reporting skipped records on stderr.

    ``collapse``: leave warnings to the caller's :class:`_WarningSummary`
    (one line per kind) instead of one line per skipped record.
    """
    from ecgsoup.distributed import connect
    from ecgsoup.store import SkippedRecordWarning, StoreDamageWarning, embed_to_store

    _positive("--batch-size", args.batch_size)
    _positive("--chunk-size", args.chunk_size)
    lead_map = _parse_lead_map(args.lead_map)

    from ecgsoup.backbones import LicenceNotice

    def report(message, category, *rest, **kwargs):
        if issubclass(category, (SkippedRecordWarning, StoreDamageWarning)):
            print(f"ecgsoup {args.command}: {message}", file=sys.stderr)
        elif issubclass(category, LicenceNotice):
            print(f"ecgsoup {args.command}: licence: {message}", file=sys.stderr)
        else:
            previous(message, category, *rest, **kwargs)

    try:
        with warnings.catch_warnings():
            previous = warnings.showwarning
            warnings.simplefilter("always", SkippedRecordWarning)
            warnings.simplefilter("always", StoreDamageWarning)
            # Once per weights file and process is the registry's own rule; the warnings module's
            # per-line memory must not hide the notice of a second run in the same process.
            warnings.simplefilter("always", LicenceNotice)
            if not collapse:
                warnings.showwarning = report
            with connect(scheduler=scheduler, workers=workers) as client:
                return embed_to_store(
                    source, out, model=args.model, precision=args.precision, batch_size=args.batch_size,
                    device=args.device, lead_map=lead_map, sampling_rate=args.sampling_rate,
                    ptbxl_rate=args.ptbxl_rate, pad=args.pad,
                    format=fmt, chunk_size=args.chunk_size, limit=limit, overwrite=overwrite, client=client,
                    verbose=0 if args.quiet else 1, derive_leads=args.derive_leads, id_from=args.id_from,
                    poor_signals="skip" if args.skip_poor_signals else "flag",
                )  # fmt: skip
    except (FileNotFoundError, NotADirectoryError, ValueError, ImportError) as error:
        # ValueError covers RecordError, WeightsError and StoreError: all name the file and the fix.
        raise CLIError(str(error)) from None


# --- embed ----------------------------------------------------------------------------------


def _add_embed(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="embed every record of a folder / PTB-XL root / .npz into a resumable store",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Read every record of INPUT, preprocess it for the model (its own sampling rate "
        "and leads) and store the pooled embeddings of all layers. Re-running with the same --out "
        "computes only the records not yet in the store. Bad records are reported and skipped. "
        "One run at a time writes a store (a second one is refused, naming the first); Ctrl-C "
        "saves the finished blocks and exits with status 130.",
    )
    p.add_argument("input", help="a folder of WFDB/Challenge records and hospital exports (DICOM, HL7 aECG, "
                                 "GE MUSE or Philips XML, SCP-ECG, EDF/BDF), a PTB-XL root, a single record or "
                                 "file, or an .npz with x (records, time, leads), fs, lead_names "
                                 "[, record_id]")  # fmt: skip
    p.add_argument("--out", required=True, help="the store: *.zarr (directory) or *.npz")
    p.add_argument("--format", choices=["zarr", "npz"], default=None, help="store format (None: from the --out extension)")
    _add_model_options(p)
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler to shard the records over")
    cluster.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N processes")
    p.add_argument("--limit", type=int, default=None, help="embed at most N more records, then stop (resumable)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over instead of resuming: deletes --out only if it is an ecgsoup store "
                        "(never the input, a CSV or a foreign zarr group)")  # fmt: skip
    p.set_defaults(func=_cmd_embed)


def _cmd_embed(args) -> int:
    if args.limit is not None and args.limit < 0:
        raise CLIError(f"--limit must be >= 0, got {args.limit}.")
    summary = _embed(args, args.input, args.out, limit=args.limit, overwrite=args.overwrite,
                     scheduler=args.scheduler, workers=args.workers, fmt=args.format)  # fmt: skip
    if summary.n_done == 0 and summary.n_failed:
        first_id, first = summary.errors[0]
        raise CLIError(
            f"no record of {args.input} could be embedded ({summary.n_failed} failed); "
            f"first: {first_id}: {first}"
        )
    rate = f", {summary.records_per_second:.1f} records/s" if summary.n_computed else ""
    formats = ", ".join(f"{fmt} {n}" for fmt, n in summary.formats.items())
    print(
        f"{summary.store}: {summary.n_done} of {summary.n_records} records"
        f"{f' ({formats})' if formats else ''} embedded, "
        f"{summary.n_failed} failed, {summary.n_pending} pending. This run: {summary.n_computed} "
        f"computed, {summary.n_reused} already in the store, {summary.seconds:.1f} s{rate}."
    )
    if summary.flagged:
        shown = "; ".join(f"{rid}: {note}" for rid, note in summary.flagged[:3])
        more = f" (+{len(summary.flagged) - 3} more)" if len(summary.flagged) > 3 else ""
        print(f"Quality: {len(summary.flagged)} embedded record(s) do not look like an ECG ({shown}{more}); "
              "see attrs['quality_notes'] of open_store, or pass --skip-poor-signals to leave them out.")
    if summary.derived:
        shown = ", ".join(str(rid) for rid, _ in summary.derived[:3])
        more = f" (+{len(summary.derived) - 3} more)" if len(summary.derived) > 3 else ""
        kinds = sorted({leads for _, leads in summary.derived})
        print(f"Derived leads: {len(summary.derived)} record(s) had {' / '.join(kinds)} computed from I and II "
              f"({shown}{more}); see attrs['records_with_derived_leads'] of open_store.")
    if summary.repaired:
        print(f"Repaired: {len(summary.repaired)} damaged record(s) of the store were marked for re-embedding "
              f"({', '.join(map(repr, summary.repaired[:5]))}{' ...' if len(summary.repaired) > 5 else ''}).")
    if summary.n_pending:
        print("Run the same command again to embed the pending records.")
    return EXIT_PARTIAL if summary.n_failed else EXIT_OK


# --- evaluate --------------------------------------------------------------------------------

_ID_COLUMNS = ("record_id", "ecg_id", "record", "id")
_SEPARATORS = (";", ",", "|")  # what --separator auto looks for inside label cells
_AUTO_FOLDS = "strat_fold"  # PTB-XL's official folds: used by default when the labels have them
_REGRESSION_MIN_VALUES = 20  # ecgsoup.nested.REGRESSION_MIN_VALUES, without importing scikit-learn for --help
_CLINICAL_AUTO_MAX = 2000  # more records: the features take minutes, so --clinical yes asks for them
_PMA_MIN_RECORDS = 300  # PMA's trained gate scored below PPA on 60 records; the user guide says a few hundred
# Values that read as "no" in a two-value column: the other value is then the positive class.
_OBVIOUS_NEGATIVES = {"no", "0", "false", "normal", "negative", "absent", "n"}


def _add_evaluate(sub) -> None:
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
                   help=f"record identifier column (None: the first of {', '.join(_ID_COLUMNS)})")  # fmt: skip
    p.add_argument("--task", choices=["binary", "multiclass", "multilabel", "regression"], default=None,
                   help=f"None: regression for a numeric column with more than {_REGRESSION_MIN_VALUES} distinct "
                        "values; binary with --positive or two values (or one value and empty cells); "
                        "multilabel when cells hold a separator; else multiclass")  # fmt: skip
    p.add_argument("--positive", default=None,
                   help="binary: the positive label, matched as a whole cell or as one label of a multi-label "
                        "cell (None: the other value when one of two is an obvious negative such as no, 0, "
                        "false, normal; the non-empty cells when the column has empty ones)")  # fmt: skip
    p.add_argument("--separator", default="auto",
                   help=f"separator of the labels inside a cell; 'auto' detects one of "
                        f"{' '.join(_SEPARATORS)} and refuses to guess when several occur")  # fmt: skip
    p.add_argument("--empty", choices=["drop", "negative"], default="drop",
                   help="records whose label cell is empty: leave them out, or keep them as negatives "
                        "(no label; a class of their own for multiclass)")  # fmt: skip
    p.add_argument("--min-count", type=int, default=0, metavar="N",
                   help="multilabel: drop labels with fewer than N records; multiclass: drop the records "
                        "of classes with fewer than N (0: keep all)")  # fmt: skip
    p.add_argument("--cv", type=int, default=5, help="folds (when neither --folds nor --groups applies)")
    p.add_argument("--repeats", type=int, default=1, help="repetitions of the folds (not with --folds)")
    p.add_argument("--folds", default=None, metavar="COLUMN",
                   help=f"a labels column holding each record's test fold (None: {_AUTO_FOLDS!r} when "
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
    _add_model_options(p)
    p.set_defaults(func=_cmd_evaluate)


def _normal_id(value):
    """Identifiers compared across a store and a CSV: ``"00841"`` and ``841`` match."""
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


class _WarningSummary:
    """Collect the warnings of a block; afterwards print one line per kind (evaluate's stderr).

    A probe over many records and layers repeats the same warning hundreds of
    times (an undefined AUC per fold, a skipped record each ...): one line
    with the count and the first message says the same.
    """

    def __init__(self, command):
        self.command = command

    def __enter__(self):
        self._manager = warnings.catch_warnings(record=True)
        self.caught = self._manager.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._manager.__exit__(*exc)
        from ecgsoup.store import SkippedRecordWarning

        kinds: dict = {}
        for caught in self.caught:
            kinds.setdefault(caught.category, []).append(str(caught.message).strip().splitlines()[0][:300])
        for category, messages in kinds.items():
            if issubclass(category, SkippedRecordWarning):
                line = f"{len(messages)} record(s) could not be embedded and are left out; first: {messages[0]}"
            elif len(messages) == 1:
                line = f"{category.__name__}: {messages[0]}"
            else:
                line = f"{category.__name__} x{len(messages)} (shown once): {messages[0]}"
            print(f"ecgsoup {self.command}: {line}", file=sys.stderr)
        return False


def _load_embeddings(args):
    """``(X, record_ids, attrs, n_failed, layer_spec)`` from a store, or by embedding the input."""
    from ecgsoup.store import StoreDamageWarning, StoreError, is_store, open_store

    path = Path(args.input).expanduser()
    if not path.exists():
        raise CLIError(f"{path}: no such file or folder.")
    if is_store(path):
        _given_for_a_store(args, path)
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
    with _WarningSummary(args.command):
        if args.out:
            summary = _embed(args, path, Path(args.out) / "embeddings.npz", collapse=True)
            stored = open_store(summary.store)
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="ecgsoup-evaluate-") as tmp:
                summary = _embed(args, path, Path(tmp) / "embeddings.npz", collapse=True)
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
    id_column = args.id_column or next((c for c in _ID_COLUMNS if c in columns), None)
    if id_column is None or id_column not in columns:
        raise CLIError(
            f"{path} has no record identifier column ({args.id_column or ', '.join(_ID_COLUMNS)}); "
            f"pass --id-column (columns: {columns})."
        )
    from ecgsoup.io import check_ids

    try:
        check_ids(table[id_column], f"--labels {path}: column {id_column!r}")  # empty or repeated ids
    except ValueError as error:
        raise CLIError(str(error)) from None
    ids = [_normal_id(v) for v in table[id_column]]
    if len(set(ids)) < len(ids):
        raise CLIError(f"{path}: column {id_column!r} holds duplicate identifiers.")
    rows = table.apply(lambda column: column.astype(str).str.strip()).to_dict("records")
    return dict(zip(ids, rows)), id_column


# Cells that mean "no value" in exported tables: they are empty labels, not a class of their own.
_MISSING_MARKERS = {"na", "n/a", "nan", "null", "none", "<na>", "nat", "#n/a"}


def _label_cell(value: str, record_id, args) -> str:
    """A label cell as text to split: missing-value markers empty, a dict literal its keys.

    PTB-XL's ``scp_codes`` cells are dict strings (``{'NORM': 100.0, 'SR': 0.0}``):
    their labels are the keys, joined by the separator (``;`` when it is detected).
    The literal is parsed as data, never run.
    """
    from ecgsoup.tasks import scp_codes_dict

    text = str(value).strip()
    if text.lower() in _MISSING_MARKERS:
        return ""
    if text.startswith("{"):  # a dict literal, or a broken one: never split on its commas
        try:
            keys = [str(k).strip() for k in scp_codes_dict(text)]
        except ValueError as error:
            raise CLIError(f"--target {args.target!r}, record {record_id}: {error} Write it as "
                           "{'NORM': 100.0} or NORM;SR.") from None  # fmt: skip
        joiner = args.separator if args.separator not in ("auto", "") else ";"
        return joiner.join(k for k in keys if k)
    return text


def _split_cell(value: str, separator) -> list:
    if separator is None:
        return [value] if value else []
    return [part.strip() for part in value.split(separator) if part.strip()]


def _detect_separator(values: list, args):
    """The separator of multi-label cells, ``None`` for single-label cells; refuses when ambiguous.

    A candidate counts only when it really separates labels: some piece of a
    split cell is a whole cell elsewhere, or recurs in several distinct cells.
    ``"Atrial flutter, typical"`` alone in its column is then one label, while
    ``"STTC, HYP"`` next to ``"STTC"`` cells is two.
    """
    if args.separator != "auto":
        return args.separator or None
    cells = sorted({v for v in values if v})
    whole = set(cells)
    confirmed = {}
    for separator in _SEPARATORS:
        split = [c for c in cells if separator in c]
        if not split:
            continue
        seen: dict = {}
        for cell in split:
            for piece in set(_split_cell(cell, separator)):
                seen[piece] = seen.get(piece, 0) + 1
        if any(piece in whole or n > 1 for piece, n in seen.items()):
            confirmed[separator] = sum(separator in v for v in values)
    if len(confirmed) > 1:
        found = ", ".join(f"{sep!r} in {n} cells" for sep, n in confirmed.items())
        raise CLIError(
            f"--target {args.target!r}: cannot tell which separator splits the labels ({found}); "
            f"pass --separator, e.g. --separator '{next(iter(confirmed))}'."
        )
    return next(iter(confirmed), None)


def _counts(items) -> str:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return ", ".join(f"{name} {n}" for name, n in ordered)


def _make_target(values: list, args):
    """``(y, keep, task, description, report)`` from the label cells of the embedded records.

    ``keep`` indexes the records (of ``values``) that enter the probe; ``report``
    is the parsed task, printed before anything is fitted.
    """
    import numpy as np

    separator = _detect_separator(values, args)
    labels = [_split_cell(v, separator) for v in values]
    empty = [i for i, v in enumerate(values) if not labels[i]]
    every = sorted({label for cell in labels for label in cell})
    task = args.task
    if task is None and separator is None and args.positive is None and _numeric_column(values):
        task = "regression"
    if task == "regression":
        return _regression_target(values, args)
    if task is None:
        if args.positive is not None:
            task = "binary"
        elif separator is not None and any(len(cell) > 1 for cell in labels):
            task = "multilabel"
        elif len(every) == 2 or (len(every) == 1 and empty):
            task = "binary"
        else:
            task = "multiclass"
    split_note = f", labels split on {separator!r}" if separator is not None else ""
    report = [f"task: {task} on --target {args.target!r}{split_note}"]
    drop = args.empty == "drop"

    if task == "binary":
        # "Has any label" vs "has none": there the empty cells are the negatives by definition.
        definitional = args.positive is None and bool(empty) and len(every) != 2
        if args.positive is not None:
            positive = args.positive
            if positive not in every and positive not in values:
                raise CLIError(f"--positive {positive!r} never occurs in --target {args.target!r}; "
                               f"labels: {every[:10]}")  # fmt: skip
            hit = [positive in cell or positive == v for cell, v in zip(labels, values)]
            what = f"{args.target} {'has' if separator is not None else '=='} {positive!r}"
        elif definitional:
            hit = [bool(cell) for cell in labels]
            what = f"{args.target} non-empty"
        elif len(every) == 2:
            positive = _obvious_positive(every, labels, args)
            hit = [positive in cell for cell in labels]
            what = f"{args.target} == {positive!r}"
        else:
            raise CLIError(f"--target {args.target!r} has {len(every)} values {every[:10]}; "
                           "name the positive one with --positive, or use --task multiclass.")  # fmt: skip
        if definitional:
            keep = list(range(len(values)))
            empty_note = f"{len(empty)} records with an empty cell are the negatives (the target is 'non-empty')"
        elif drop:
            keep = [i for i in range(len(values)) if labels[i]]
            empty_note = f"{len(empty)} records with an empty cell, dropped (--empty drop)"
        else:
            keep = list(range(len(values)))
            empty_note = f"{len(empty)} records with an empty cell, kept as negatives (--empty negative)"
        y = np.asarray([hit[i] for i in keep], dtype=int)
        counts = np.bincount(y, minlength=2)
        report.append(f"  positive: {what}: {counts[1]} records; negative: {counts[0]} records")
        report.append(f"  empty labels: {empty_note}")
        return y, keep, task, f"{what} ({counts[1]} positive, {counts[0]} negative)", report

    if task == "multiclass":
        classes = [v if v else "(empty)" for v in values]
        if drop:
            keep = [i for i, v in enumerate(values) if v]
            empty_note = f"{len(empty)} records, dropped (--empty drop)"
        else:
            keep = list(range(len(values)))
            empty_note = f"{len(empty)} records, kept as the class '(empty)' (--empty negative)"
        if args.min_count > 1:
            sizes = {c: sum(classes[i] == c for i in keep) for c in {classes[i] for i in keep}}
            rare = sorted(c for c, n in sizes.items() if n < args.min_count)
            if rare:
                keep = [i for i in keep if classes[i] not in rare]
                report.append(f"  --min-count {args.min_count}: dropped the records of {len(rare)} rare "
                              f"classes: {_counts(c for c in classes if c in rare)}")  # fmt: skip
        y = np.asarray([classes[i] for i in keep], dtype=object)
        distinct = sorted(set(y))
        if len(distinct) < 2:
            raise CLIError(f"--target {args.target!r} has a single value {distinct}; nothing to classify.")
        report.append(f"  classes ({len(distinct)}): {_counts(y)}")
        report.append(f"  empty labels: {empty_note}")
        return y, keep, task, f"{args.target} ({len(distinct)} classes)", report

    from sklearn.preprocessing import MultiLabelBinarizer

    if drop:
        keep = [i for i in range(len(values)) if labels[i]]
        empty_note = f"{len(empty)} records, dropped (--empty drop)"
    else:
        keep = list(range(len(values)))
        empty_note = f"{len(empty)} records, kept with no label (negative for every class; --empty negative)"
    if args.min_count > 1:
        sizes: dict = {}
        for i in keep:
            for label in labels[i]:
                sizes[label] = sizes.get(label, 0) + 1
        rare = {label for label, n in sizes.items() if n < args.min_count}
        if rare:
            report.append(f"  --min-count {args.min_count}: dropped {len(rare)} rare labels: "
                          f"{', '.join(f'{r} {sizes[r]}' for r in sorted(rare, key=lambda r: (sizes[r], r)))}")  # fmt: skip
            labels = [[label for label in cell if label not in rare] for cell in labels]
            left = [i for i in keep if not labels[i] and values[i]]
            if left and drop:
                keep = [i for i in keep if labels[i]]
                report.append(f"  {len(left)} records had only rare labels and are dropped (--empty drop)")
            elif left:
                report.append(f"  {len(left)} records had only rare labels and stay as negatives (--empty negative)")
    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform([labels[i] for i in keep])
    args.label_names = [str(c) for c in binarizer.classes_]  # the columns of y, for predictions.csv
    if y.shape[1] == 0:
        raise CLIError(f"--target {args.target!r} holds no label.")
    report.append(f"  classes ({y.shape[1]}): {_counts(label for i in keep for label in labels[i])}")
    report.append(f"  empty labels: {empty_note}")
    return y, keep, task, f"{args.target} ({y.shape[1]} labels)", report


_BOUND = re.compile(r"^\s*(?:[<>]=?|[≤≥])\s*(?P<a>[-+]?\d+(?:\.\d+)?)\s*$|^\s*(?P<b>\d+(?:\.\d+)?)\s*\+\s*$")


def _bound(text: str):
    """The number of a bound written as a cell (">89", "90+", "<18"): ages censored for anonymity."""
    match = _BOUND.match(text)
    return None if match is None else float(match.group("a") or match.group("b"))


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return _bound(text)
    return value if value == value and abs(value) != float("inf") else None


def _numeric_column(values: list) -> bool:
    """Every non-empty cell a number, with more distinct values than a classification target has."""
    cells = [v for v in values if v]
    if not cells or any(_number(v) is None for v in cells):
        return False
    return len({_number(v) for v in cells}) > _REGRESSION_MIN_VALUES


def _regression_target(values: list, args):
    """``(y, keep, "regression", description, report)``: a continuous target; empty cells are left out."""
    import numpy as np

    keep = [i for i, v in enumerate(values) if v]
    bad = [values[i] for i in keep if _number(values[i]) is None]
    if bad:
        raise CLIError(f"--target {args.target!r} --task regression: {len(bad)} cells are not numbers "
                       f"(first: {bad[0]!r}); fix them or leave them empty.")  # fmt: skip
    y = np.asarray([_number(values[i]) for i in keep], dtype=float)
    bounds = sorted({values[i] for i in keep if _bound(values[i]) is not None})
    if len(np.unique(y)) < 3:
        raise CLIError(f"--target {args.target!r} has {len(np.unique(y))} distinct values; a regression needs "
                       "more (use --task binary or multiclass).")  # fmt: skip
    empty = len(values) - len(keep)
    report = [f"task: regression on --target {args.target!r} (a number per record; ridge regression, R² and MAE)",
              f"  values: {len(y)} records, min {y.min():g}, median {np.median(y):g}, max {y.max():g}, "
              f"{len(np.unique(y))} distinct",
              f"  empty labels: {empty} records, dropped (a regression has no negative class)"]  # fmt: skip
    if bounds:
        n_bound = sum(_bound(values[i]) is not None for i in keep)
        report.append(f"  bounds: {n_bound} cells such as {bounds[0]!r} are read as their number "
                      f"({_bound(bounds[0]):g}), the limit of an anonymised value")  # fmt: skip
    return y, keep, "regression", f"{args.target} (continuous, {len(y)} records)", report


def _obvious_positive(every: list, labels: list, args) -> str:
    """The positive one of two values: the other of an obvious negative, else the user must say."""
    negatives = [v for v in every if v.strip().lower() in _OBVIOUS_NEGATIVES]
    if len(negatives) == 1:
        return next(v for v in every if v != negatives[0])
    counts = {v: sum(v in cell for cell in labels) for v in every}
    raise CLIError(f"--target {args.target!r} has two values, {every[0]!r} ({counts[every[0]]} records) and "
                   f"{every[1]!r} ({counts[every[1]]}); say which is positive: --positive {every[0]!r} or "
                   f"--positive {every[1]!r}.")  # fmt: skip


def _cv_splits(args, rows: list, y, task):
    """``(cv, description)`` for :func:`ecgsoup.evaluate.layer_probe`: folds or groups from the labels."""
    import numpy as np

    folds_column = args.folds
    if folds_column is None and args.groups is None and rows and _AUTO_FOLDS in rows[0]:
        folds_column = _AUTO_FOLDS
    if folds_column is not None and folds_column.lower() == "none":
        folds_column = None
    if folds_column is not None:
        fold = [row[folds_column] for row in rows]
        if any(f == "" for f in fold):
            raise CLIError(f"--folds {folds_column!r}: {sum(f == '' for f in fold)} records have no fold value.")
        from sklearn.model_selection import PredefinedSplit

        codes = {f: k for k, f in enumerate(sorted(set(fold), key=_normal_id_key))}
        if len(codes) < 2:
            raise CLIError(f"--folds {folds_column!r}: all records are in one fold; nothing to test on.")
        cv = list(PredefinedSplit([codes[f] for f in fold]).split())
        auto = " (found in the labels; --folds none for --cv folds)" if args.folds is None else ""
        return cv, f"{len(codes)} folds from column {folds_column!r}{auto}"
    if args.groups is not None:
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        groups = np.asarray([row[args.groups] for row in rows])
        n_groups = len(set(groups))
        if n_groups < args.cv:
            raise CLIError(f"--groups {args.groups!r}: {n_groups} groups, fewer than --cv {args.cv}.")
        cv = []
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            splitter = (GroupKFold(args.cv, shuffle=True, random_state=seed) if task == "multilabel"
                        else StratifiedGroupKFold(args.cv, shuffle=True, random_state=seed))  # fmt: skip
            cv += list(splitter.split(np.zeros(len(groups)), y, groups))
        return cv, f"{args.cv}-fold CV x {args.repeats} by groups of {args.groups!r} ({n_groups} groups)"
    return args.cv, f"{args.cv}-fold CV x {args.repeats}"


def _normal_id_key(value):
    value = _normal_id(value)
    return (0, value, "") if isinstance(value, int) else (1, 0, str(value))


def _cmd_evaluate(args) -> int:
    _positive("--cv", args.cv)
    _positive("--repeats", args.repeats)
    _positive("--bootstrap", args.bootstrap)
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
    out = _output_folder("--out", args.out)
    from ecgsoup.report import REPORT_FILES

    for name in REPORT_FILES:
        if (out / name).is_dir():
            raise CLIError(f"--out {out}: {name} there is a folder; remove it or choose another --out.")
    with _locked_output("--out", out, "evaluate"):
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
    """:func:`_cmd_evaluate` once its options, labels and output folder are checked."""
    from ecgsoup.evaluate import plot_layer_probe
    from ecgsoup.nested import nested_probe

    X, record_ids, attrs, n_failed, layer_spec = _load_embeddings(args)
    keys = [_normal_id(r) for r in record_ids]
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
    cells = [_label_cell(row[args.target], row.get(id_column), args) for row in label_rows]
    y, keep, task, description, report = _make_target(cells, args)
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
    cv, split_description = _cv_splits(args, label_rows, y, task)
    groups = None if args.groups is None else [row[args.groups] for row in label_rows]
    X = X[rows]
    print("\n".join(report))
    print(f"{len(rows)} records, target {description}, {split_description}, "
          f"model {attrs['model_name']} ({attrs['model_sha256'][:12]})", flush=True)  # fmt: skip
    fusions = _auto_fusions(fusions, len(rows))
    baselines = _clinical(args, attrs, [record_ids[i] for i in rows])
    try:
        with _WarningSummary(args.command):
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
            label_names=getattr(args, "label_names", None), title=title,
        )  # fmt: skip
        print(f"wrote {', '.join(p.name for p in [out / 'layer_probe.csv', out / 'layer_probe.png', *written])} "
              f"in {out}")  # fmt: skip
    return EXIT_PARTIAL if n_failed else EXIT_OK


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


# --- info ---------------------------------------------------------------------------------------


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="model, configurations, versions and hardware")
    p.add_argument("--model", default=None, help="describe this model (default: the bundled one)")
    p.add_argument("--configs", action="store_true", help="list the named encoder configurations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)


def _model_info(spec, explicit: bool) -> dict:
    import dataclasses

    from ecgsoup.backbones import load_backbone
    from ecgsoup.backbones.stmem import WeightsError, model_fingerprint

    name = {"random": "random:ecgsoup-100hz-tiny"}.get(spec, spec)
    try:
        encoder = load_backbone(name)
    except (WeightsError, ValueError, OSError) as error:
        if explicit:
            raise CLIError(f"--model {spec}: {error}") from None
        return {"source": spec, "available": False, "problem": str(error)}
    metadata = dict(getattr(encoder, "metadata", {}))
    card = encoder.card
    return {
        "source": spec,
        "available": True,
        "name": card.name if card else type(encoder).__name__,
        "family": encoder.family,
        "sha256": model_fingerprint(encoder),
        "pretrained": bool(metadata.get("pretrained", True)),
        "parameters": int(sum(p.numel() for p in encoder.parameters())),
        "license": card.license if card else "unstated",
        "notice": card.notice if card else "",
        "contract": encoder.contract.to_dict(),
        "contract_text": encoder.contract.describe(),
        "layers": [[layer.name, layer.width, layer.stream] for layer in encoder.layers],
        "config": dataclasses.asdict(encoder.config),
        "metadata": {k: v for k, v in metadata.items() if k != "sha256"},
    }


def _versions() -> dict:
    import platform
    from importlib import metadata

    import ecgsoup

    versions = {"ecgsoup": ecgsoup.__version__, "python": platform.python_version()}
    for package in ("torch", "scikit-learn", "numpy", "scipy", "pandas", "wfdb", "zarr", "dask", "distributed"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _hardware() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }


def _configs() -> dict:
    from ecgsoup.backbones.stmem import get_config, list_configs

    out = {}
    for name in list_configs():
        c = get_config(name)
        out[name] = {
            "sampling_rate": c.sampling_rate, "n_samples": c.n_samples, "patch_size": c.patch_size,
            "width": c.width, "depth": c.depth, "heads": c.heads, "bandpass": c.bandpass,
            "lead_names": list(c.lead_names),
        }  # fmt: skip
    return out


def _cmd_info(args) -> int:
    if args.configs:
        info = {"configs": _configs()}
    else:
        info = {
            "model": _model_info(args.model or "default", explicit=args.model is not None),
            "versions": _versions(),
            "hardware": _hardware(),
            "configs": sorted(_configs()),
        }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    if args.configs:
        print(f"{'configuration':<22} {'Hz':>5} {'samples':>7} {'patch':>5} {'width':>5} {'depth':>5}  band-pass")
        for name, c in info["configs"].items():
            band = "-" if c["bandpass"] is None else f"{c['bandpass'][0]:g}-{c['bandpass'][1]:g} Hz"
            print(f"{name:<22} {c['sampling_rate']:>5g} {c['n_samples']:>7} {c['patch_size']:>5} "
                  f"{c['width']:>5} {c['depth']:>5}  {band}")  # fmt: skip
        return EXIT_OK
    model = info["model"]
    print(f"model: {model['source']}")
    if model["available"]:
        layers = model["layers"]
        widths = sorted({w for _, w, _ in layers})
        print(f"  name: {model['name']}  (family {model['family']}; pretrained: "
              f"{'yes' if model['pretrained'] else 'NO, random weights'})")  # fmt: skip
        print(f"  sha256: {model['sha256']}")
        print(f"  licence: {model['license']}" + (f"  ({model['notice']})" if model["notice"] else ""))
        print(f"  parameters: {model['parameters']:,}  layers {len(layers)} ({layers[0][0]} .. {layers[-1][0]}), "
              f"width {'-'.join(map(str, (widths[0], widths[-1]))) if len(widths) > 1 else widths[0]}")  # fmt: skip
        print(f"  input: {model['contract_text']}")
        for key, value in model["metadata"].items():
            print(f"  {key}: {value if not isinstance(value, (dict, list)) else json.dumps(value, default=str)}")
    else:
        print(f"  not available: {model['problem']}")
    print("versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in info["versions"].items()))
    hw = info["hardware"]
    cuda = f"yes ({', '.join(hw['cuda_devices'])})" if hw["cuda_available"] else "no"
    print(f"hardware: {hw['cpu_count']} CPUs, torch threads {hw['torch_threads']}, CUDA {cuda}, "
          f"MPS {'yes' if hw['mps_available'] else 'no'}")  # fmt: skip
    print("configurations: " + ", ".join(info["configs"]) + "  (details: ecgsoup info --configs)")
    return EXIT_OK


# --- entry point ----------------------------------------------------------------------------------

# Sub-commands, in the order `ecgsoup --help` lists them.  Another module adds
# one with a `_add_<name>(sub)` function that calls `sub.add_parser(...)` and
# `set_defaults(func=...)`, listed here (e.g. `_add_demo` from ecgsoup.demo).
def _add_demo(sub) -> None:
    from ecgsoup.tasks import LUDB_TASKS

    p = sub.add_parser("demo", help="layer-wise probe + PPA/PMA on the bundled real LUDB sample")
    p.add_argument("--out", default="demo-output", help="folder for tables and plots")
    p.add_argument("--model", default="default", help="'default', a model directory or an ST-MEM .pth")
    p.add_argument("--tasks", nargs="+", default=list(LUDB_TASKS), choices=list(LUDB_TASKS))
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from ecgsoup.demo import run_demo
    from ecgsoup.backbones.stmem import WeightsError

    out = _output_folder("--out", args.out)
    try:
        with _locked_output("--out", out, "demo"):
            run_demo(out, model=args.model, tasks=args.tasks, cv=args.cv, random_state=args.seed)
    except WeightsError as error:
        raise CLIError(str(error)) from None
    return 0


def _add_benchmark(sub) -> None:
    from ecgsoup.tasks import PTBXL_TASKS

    p = sub.add_parser("benchmark", help="standard benchmarks: PTB-XL's six tasks, every layer, fusions, baselines")
    kinds = p.add_subparsers(dest="benchmark", required=True)
    q = kinds.add_parser(
        "ptbxl",
        help="the PTB-XL benchmark (folds 1-8 train, 9 validation, 10 test)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Probe every layer, PPA, PMA, the same architecture with random weights, clinical "
            "features and a hybrid on PTB-XL's six tasks (all, diag, sub, super, form, rhythm). "
            "Folds 1-8 train; when fold 10 has labels it is scored and choices are made on fold 9; "
            "when it has none (the z-scored subset), fold 9 is scored and choices are made by "
            "cross-validation inside folds 1-8. Macro ROC AUC with bootstrap 95% intervals."
        ),
    )
    q.add_argument("root", help="a PTB-XL download (records100/ or records500/, ptbxl_database.csv, "
                               "scp_statements.csv) or a folder of npz shards with labels.csv")  # fmt: skip
    q.add_argument("--model", action="append", default=None,
                   help="'default', a model folder, <family>:<checkpoint> or random:<name>; give --model several "
                        "times for the per-layer atlas: every model through the same protocol, one combined table "
                        "and figure (atlas.{json,md,csv,png}), resumable")  # fmt: skip
    q.add_argument("--out", default="ptbxl-benchmark", help="folder for ptbxl.{json,md,csv}, figures and the cache")
    q.add_argument("--pma", choices=["on", "off"], default=None,
                   help="PMA rows (a gate trained per split, the slowest fusion); default on for one model, "
                        "off for the atlas")  # fmt: skip
    q.add_argument("--rate", type=int, choices=[100, 500], default=100, help="which copy of a download to read")
    q.add_argument("--scp-statements", default=None, help="statement table (default: ROOT/scp_statements.csv)")
    q.add_argument("--tasks", nargs="+", choices=list(PTBXL_TASKS), default=list(PTBXL_TASKS))
    q.add_argument("--probes", nargs="+", choices=["logistic", "mlp"], default=["logistic", "mlp"])
    q.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    q.add_argument("--max-records", type=int, default=None, help="a random subset, for a quick check")
    q.add_argument("--no-features", action="store_true", help="leave out the clinical-features and hybrid rows")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    q.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    q.add_argument("--device", default="cpu")
    q.add_argument("--n-jobs", type=int, default=None, help="processes for the clinical features, probes and bootstrap")
    q.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler to spread embedding and probes over")
    q.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N processes")
    q.set_defaults(func=_cmd_benchmark_ptbxl)


def _cmd_benchmark_ptbxl(args) -> int:
    from ecgsoup.benchmark import ptbxl
    from ecgsoup.backbones.stmem import WeightsError

    if args.bootstrap < 100:
        raise CLIError(f"--bootstrap {args.bootstrap} is too few for a 95% interval; use at least 100.")
    models = args.model or ["default"]
    if len(models) > 1:
        return _cmd_atlas(args, models)
    try:
        result = ptbxl(
            args.root, model=models[0], rate=args.rate, tasks=args.tasks, probes=args.probes,
            n_bootstrap=args.bootstrap, max_records=args.max_records, out=args.out,
            scp_statements=args.scp_statements, features=not args.no_features, random_state=args.seed,
            batch_size=args.batch_size, precision=args.precision, device=args.device, n_jobs=args.n_jobs,
            pma=args.pma != "off", scheduler=args.scheduler, workers=args.workers,
        )  # fmt: skip
    except (WeightsError, FileNotFoundError, ValueError) as error:
        raise CLIError(str(error).splitlines()[0]) from None
    print(result.summary())
    print(f"\nwrote {args.out}/ptbxl.json, ptbxl.md, ptbxl.csv and {len(result.figures)} figures")
    return 0


def _cmd_atlas(args, models) -> int:
    from ecgsoup.atlas import atlas
    from ecgsoup.backbones.stmem import WeightsError

    try:
        result = atlas(
            args.root, models, out=args.out, tasks=args.tasks, probes=args.probes, n_bootstrap=args.bootstrap,
            max_records=args.max_records, rate=args.rate, scp_statements=args.scp_statements,
            features=not args.no_features, pma=args.pma == "on", random_state=args.seed,
            batch_size=args.batch_size, precision=args.precision, device=args.device, n_jobs=args.n_jobs,
        )  # fmt: skip
    except (WeightsError, FileNotFoundError, ValueError) as error:
        raise CLIError(str(error).splitlines()[0]) from None
    print(result.summary())
    print(f"\nwrote {args.out}/atlas.json, atlas.md, atlas.csv, atlas_layers.csv, atlas.png and each model's run "
          f"in {args.out}/models/")  # fmt: skip
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="the backbones ecgsoup runs: families, layers, licences, where to get weights")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from ecgsoup.backbones import list_backbones
    from ecgsoup.backbones._registry import families, model_home

    table = list_backbones()
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return EXIT_OK
    print(f"{'name':<24} {'family':<11} {'layers':>6}  {'widths':<34} {'licence':<13} weights")
    for row in table.itertuples():
        present = "present" if row.present else f"absent: {row.download}"
        print(f"{row.name:<24} {row.family:<11} {row.layers:>6}  {row.widths[:34]:<34} {row.license:<13} {present}")
    print(f"\nRegistered weights are looked for in {model_home()}/<name>/ (set ECGSOUP_MODEL_HOME); "
          "ecgsoup never downloads them.")  # fmt: skip
    print("An original file also loads directly: --model <family>:<path>, families: "
          + ", ".join(families()) + ". Choose a named contract with @<name>, e.g. hubert-ecg:<folder>@benchmark.")
    for family, entry in families().items():
        contracts = ", ".join(f"{n}{' (default)' if n == entry.default_contract else ''}" for n in entry.contracts)
        print(f"  {family}: {entry.card.license}; contracts {contracts}")
    return EXIT_OK


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="turn an original checkpoint into an ecgsoup model folder (safetensors)")
    p.add_argument("family", help="the backbone family: see `ecgsoup models`")
    p.add_argument("source", help="the original weights file or folder")
    p.add_argument("--out", required=True, help="new folder for config.json + model.safetensors")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args) -> int:
    from ecgsoup.backbones import load_backbone, save_backbone
    from ecgsoup.backbones._registry import families

    if args.family not in families():
        raise CLIError(f"unknown family {args.family!r}; known: {', '.join(families())} (see `ecgsoup models`).")
    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise CLIError(f"{out} is not empty; choose a new folder for the converted model.")
    module = load_backbone(f"{args.family}:{args.source}")
    save_backbone(module, out, metadata={"converted_from": Path(args.source).name})
    print(f"wrote {out} ({module.family}, {len(module.layers)} layers, sha256 of the original "
          f"{module.metadata['sha256'][:12]}); use it with --model {out}")  # fmt: skip
    return EXIT_OK


_REGISTRARS = (_add_benchmark, _add_convert, _add_demo, _add_embed, _add_evaluate, _add_info, _add_models,
               _add_pretrain)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from ecgsoup._version import __version__

    parser = argparse.ArgumentParser(
        prog="ecgsoup",
        description="Layer-wise ECG foundation-model features.",
        epilog="Exit status: 0 done; 1 some records could not be embedded (each is listed); "
        "2 a problem you can fix (printed as one line); 130 interrupted (finished work is kept).",
    )
    parser.add_argument("--version", action="version", version=f"ecgsoup {__version__}")
    sub = parser.add_subparsers(dest="command", required=False)
    # Every sub-command's --help shows its defaults.
    plain = sub.add_parser

    def add_parser(name, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        return plain(name, **kwargs)

    sub.add_parser = add_parser
    for register in _REGISTRARS:
        register(sub)
    for choice in sub.choices.values():
        _say_defaults(choice)
    return parser


def _say_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every option with a default a help line that shows it (nested sub-commands too)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _say_defaults(child)
        elif action.option_strings and action.help is None and action.default is not None and action.default is not False:
            action.help = "(default: %(default)s)"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `ecgsoup`: the overview, not an error
        parser.print_help()
        return EXIT_OK
    from ecgsoup.backbones.stmem import WeightsError

    try:
        return args.func(args)
    except (CLIError, WeightsError) as error:
        # Unusable weights (wrong layout, ambiguous rate, corrupt file) are a user-fixable problem too.
        print(f"ecgsoup {args.command}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        # Ctrl-C: one line, no traceback.  An embedding run says what it saved (EmbedInterrupted).
        print(f"ecgsoup {args.command}: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - whatever a hostile input reaches: one line, never a traceback
        if os.environ.get("ECGSOUP_TRACEBACK"):
            raise
        print(f"ecgsoup {args.command}: error: {_error_line(error)}", file=sys.stderr)
        return EXIT_USAGE


# What to do about an operating-system error, by errno.
_OS_FIXES = {
    "EACCES": "choose a location you can write to", "EPERM": "choose a location you can write to",
    "EROFS": "the file system is read-only: choose another location",
    "ENOSPC": "the disk is full: free some space or write elsewhere",
    "EDQUOT": "the disk quota is used up: free some space or write elsewhere",
    "ENAMETOOLONG": "use a shorter name", "EISDIR": "name a file, not a folder",
    "ENOTDIR": "a part of the path is a file, not a folder", "ENOENT": "check the path",
}  # fmt: skip


def _error_line(error: BaseException) -> str:
    """One line for an error the sub-command did not anticipate: what, where, and the fix when known."""
    import errno

    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, "")
        where = f"{error.filename}: " if error.filename else ""
        fix = _OS_FIXES.get(name)
        return f"{where}{error.strerror or error}" + (f"; {fix}." if fix else ".")
    if isinstance(error, MemoryError):
        return "out of memory; the input or a setting is larger than this machine can hold."
    text = (str(error).strip().splitlines() or [""])[0][:500]
    if isinstance(error, ValueError) and text:
        return text
    return (f"{type(error).__name__}: {text} " if text else f"{type(error).__name__} ") + (
        "(unexpected; set ECGSOUP_TRACEBACK=1 to see where, and report it)")


if __name__ == "__main__":
    sys.exit(main())
