"""``ecgsoup embed``, and the embedding options it shares with ``ecgsoup evaluate``."""

from __future__ import annotations

import argparse
import sys
import warnings

from ecgsoup.cli.common import EXIT_OK, EXIT_PARTIAL, CLIError, check_positive

__all__ = ["add_model_options", "add_parser", "parse_lead_map", "refuse_options_for_a_store", "run",
           "run_embedding"]  # fmt: skip


def add_model_options(p) -> None:
    """The options that choose the model and how records are read and embedded (embed, evaluate)."""
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
    # What these options were left at: evaluate refuses the ones given for a store (see refuse_options_for_a_store).
    p.set_defaults(embedding_defaults=[(a.option_strings[0], a.dest, a.default) for a in p._actions[first:]
                                       if a.dest != "quiet"])  # fmt: skip


def refuse_options_for_a_store(args, path) -> None:
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


def parse_lead_map(pairs) -> dict | None:
    """``--lead-map II=ECG2 V1=C1`` as ``{"II": "ECG2", "V1": "C1"}``; ``None`` when not given."""
    if not pairs:
        return None
    lead_map = {}
    for pair in pairs:
        model_lead, sep, data_lead = pair.partition("=")
        if not sep or not model_lead.strip() or not data_lead.strip():
            raise CLIError(f"--lead-map {pair!r}: expected MODEL_LEAD=DATA_LEAD, e.g. II=ECG2.")
        lead_map[model_lead.strip()] = data_lead.strip()
    return lead_map


def run_embedding(args, source, out, *, limit=None, overwrite=False, scheduler=None, workers=None, fmt=None,
                  collapse=False):  # fmt: skip
    """Run :func:`ecgsoup.store.embed_to_store`, reporting skipped records on stderr.

    ``collapse``: leave warnings to the caller's :class:`~ecgsoup.cli.common.WarningSummary`
    (one line per kind) instead of one line per skipped record.
    """
    from ecgsoup.distributed import connect
    from ecgsoup.store import SkippedRecordWarning, StoreDamageWarning, embed_to_store

    check_positive("--batch-size", args.batch_size)
    check_positive("--chunk-size", args.chunk_size)
    lead_map = parse_lead_map(args.lead_map)

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



# --- the embed command ----------------------------------------------------------------------


def add_parser(sub) -> None:
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
    add_model_options(p)
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler to shard the records over")
    cluster.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N processes")
    p.add_argument("--limit", type=int, default=None, help="embed at most N more records, then stop (resumable)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over instead of resuming: deletes --out only if it is an ecgsoup store "
                        "(never the input, a CSV or a foreign zarr group)")  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    if args.limit is not None and args.limit < 0:
        raise CLIError(f"--limit must be >= 0, got {args.limit}.")
    summary = run_embedding(args, args.input, args.out, limit=args.limit, overwrite=args.overwrite,
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
