"""The PTB-XL protocol: read, embed, clinical features, probes, intervals, files."""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ecgsoup.backbones import load_backbone, random_twin, resolve_contract
from ecgsoup.benchmark._data import (
    DEFAULT_CS,
    TEST_FOLD,
    TRAIN_FOLDS,
    VALIDATION_FOLD,
    build_task,
    load_ptbxl_benchmark_data,
)
from ecgsoup.benchmark._intervals import bootstrap
from ecgsoup.benchmark._probes import PROBE_NAMES, PROBES, ProbeRun, run_jobs, run_probes
from ecgsoup.benchmark._results import PTBXLResult, write_json, write_ptbxl_results
from ecgsoup.embedding import LayerwiseEmbedder
from ecgsoup.fusion import PPA, LayerSelector
from ecgsoup.hardware import resolve_precision
from ecgsoup.preprocessing import ECGPreprocessor
from ecgsoup.tasks import (
    PTBXL_TASK_NAMES,
    PTBXL_TASKS,
)

# --- the run ------------------------------------------------------------------------------


_EMBED_CHUNK = 256  # records per Dask task when the embedding is spread over a cluster


_PREPROCESS_CHUNK = 1024  # records preprocessed at a time: no second full copy of the signals


def _preprocess(data, rows, model) -> np.ndarray:
    """The records ``rows`` of ``data``, model-ready, in chunks of records (memory: the output only)."""
    pre = ECGPreprocessor(sampling_rate=data.sampling_rate, lead_names=data.lead_names, model=model)
    pre.fit(data.X[rows[:1]])
    first = pre.transform(data.X[rows[:_PREPROCESS_CHUNK]])
    X = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    X[: len(first)] = first
    for start in range(_PREPROCESS_CHUNK, len(rows), _PREPROCESS_CHUNK):
        X[start : start + _PREPROCESS_CHUNK] = pre.transform(data.X[rows[start : start + _PREPROCESS_CHUNK]])
    return X


def _embed(data, rows, model, *, cache, batch_size, precision, device, verbose, distributed=False, X=None):
    """(layer-wise embeddings, the fitted embedder, seconds preprocessing, seconds embedding, the input).

    ``X`` is the records already preprocessed for a model with the same input contract (the
    random twin reads what its model read).
    """
    start = time.perf_counter()
    if X is None:
        X = _preprocess(data, rows, model)
    preprocessed = time.perf_counter()
    embedder = LayerwiseEmbedder(model=model, memory=cache, batch_size=batch_size, precision=precision,
                                 device=device, verbose=int(verbose))  # fmt: skip
    if not distributed:
        embeddings = embedder.fit_transform(X)
        return embeddings, embedder, preprocessed - start, time.perf_counter() - preprocessed, X
    # Each worker embeds chunks of records with a copy of the fitted embedder, without the cache
    # (a worker's disk need not be this one's).  A record's embedding does not depend on the
    # other records of its batch, so the numbers are those of one process.
    embedder.fit(X)
    worker = copy.copy(embedder).set_params(memory=None, verbose=0)
    chunks = np.array_split(np.arange(len(X)), max(1, -(-len(X) // _EMBED_CHUNK)))
    done = run_jobs({i: (worker.transform_layers, (X[chunk],)) for i, chunk in enumerate(chunks)}, -1)
    embeddings = np.concatenate([done[i][0] for i in range(len(chunks))])
    return embeddings, embedder, preprocessed - start, time.perf_counter() - preprocessed, X


def _features(data, rows, cache: Path | None, n_jobs):
    import hashlib

    from ecgsoup._version import __version__
    from ecgsoup.features import ECGFeatures

    units = "mV" if data.units == "mV" else "normalized"
    key = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        # Keyed on the samples themselves and the settings (Python's hash() changes per process).
        digest = hashlib.sha256(np.ascontiguousarray(data.X[rows]).tobytes())
        digest.update(repr((__version__, data.sampling_rate, data.lead_names, units)).encode())
        key = cache / f"features-{len(rows)}-{digest.hexdigest()[:16]}.npz"
        if key.exists():
            with np.load(key, allow_pickle=False) as saved:
                if np.array_equal(saved["ecg_id"], data.ecg_id[rows]):
                    return saved["F"], [str(n) for n in saved["names"]]
    features = ECGFeatures(sampling_rate=data.sampling_rate, lead_names=data.lead_names, units=units, n_jobs=n_jobs)
    F = features.fit_transform(data.X[rows]).astype(np.float64)
    names = [str(n) for n in features.get_feature_names_out()]
    if key is not None:
        np.savez(key, F=F, names=np.array(names), ecg_id=data.ecg_id[rows])
    return F, names


def ptbxl(
    root,
    *,
    model="default",
    rate=100,
    tasks=tuple(PTBXL_TASKS),
    probes=("logistic", "mlp"),
    Cs=DEFAULT_CS,
    n_bootstrap=1000,
    max_records=None,
    out=None,
    scp_statements=None,
    features=True,
    random_baseline=True,
    random_state=0,
    batch_size=16,
    precision="auto",
    device="cpu",
    n_jobs=None,
    pma=True,
    cache=None,
    verbose=True,
    client=None,
) -> PTBXLResult:
    """Run the PTB-XL benchmark (see the module docstring for the protocol).

    Parameters
    ----------
    root : str or Path
        A PTB-XL download or the z-scored subset folder (see
        :func:`load_ptbxl_benchmark_data`).
    model : str or path, default="default"
        The encoder to probe: ``"default"``, an ecgsoup model folder or an
        ST-MEM checkpoint.  The random-weights baseline uses its architecture.
    rate : {100, 500}, default=100
        Which copy of a full download to read.
    tasks : sequence of str, default=all six
    probes : sequence of {"logistic", "mlp", "logistic-sklearn"}, default=("logistic", "mlp")
        ``"logistic"`` runs scikit-learn's L-BFGS fit for every class and ``C``
        side by side, their evaluations batched into matrix products.
        ``"logistic-sklearn"`` is its reference: scikit-learn itself refits the
        imputer-scaler-classifier pipeline for every class and ``C``.  The two
        agree to the rounding of those matrix products; ``"logistic"`` is the
        faster, the more so the more training records.
    Cs : sequence of float
        Inverse regularisation strengths tried for the logistic probe.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the scored records for the intervals.
    max_records : int, optional
        Use a random subset of this many labelled records (same folds), for a
        quick check.  The results are then not comparable with a full run.
    out : str or Path, optional
        Folder for ``ptbxl.json``, ``ptbxl.md``, ``ptbxl.csv``, the figures
        and the embedding cache.
    features : bool, default=True
        Add the clinical-features and hybrid rows.
    random_baseline : bool, default=True
        Add the row of the same architecture with random weights (one more
        embedding pass).
    random_state : int, default=0
    batch_size, precision, device
        Passed to :class:`~ecgsoup.embedding.LayerwiseEmbedder`; ``precision="auto"``
        (the default) is bfloat16 where the device computes it natively (a CPU with
        AVX-512 BF16 or AMX, a GPU that supports it) and float32 elsewhere.
    n_jobs : int, optional
        Processes for the clinical features, the probe fits and the
        bootstrap (joblib; ``None`` follows an active
        :func:`joblib.parallel_config`, else one).
    pma : bool, default=True
        Add the PMA rows (a gate trained per split: the slowest fusion).
    cache : str or Path, optional
        Folder for the embedding and clinical-feature caches; default
        ``out/cache``.  Runs that share it embed a model, and compute the
        features, once.
    verbose : bool, default=True
        Print progress lines.
    client : dask.distributed.Client, optional
        Run the embedding (in chunks of records) and the probe fits on this
        cluster's workers; the results are the same as in one process.  Make
        one with :func:`ecgsoup.distributed.connect` (a scheduler address or a
        number of local workers), as ``--scheduler`` and ``--workers`` do.

    Returns
    -------
    result : PTBXLResult
    """
    distributed = client is not None
    if distributed:
        from joblib import parallel_config

        n_jobs = -1 if n_jobs is None else n_jobs
    with parallel_config(backend="dask", client=client) if distributed else contextlib.nullcontext():
        unknown = set(tasks) - set(PTBXL_TASKS)
        if unknown:
            raise ValueError(f"Unknown task(s) {sorted(unknown)}; the six PTB-XL tasks are {list(PTBXL_TASKS)}.")
        bad = set(probes) - set(PROBE_NAMES)
        if bad:
            raise ValueError(f"Unknown probe(s) {sorted(bad)}; use 'logistic' and/or 'mlp' (or the reference "
                             "'logistic-sklearn').")
        say = print if verbose else (lambda *a, **k: None)
        precision = resolve_precision(precision, device)
        started = time.perf_counter()
        data = load_ptbxl_benchmark_data(root, rate=rate, scp_statements=scp_statements)
        read_s = time.perf_counter() - started
        labelled_folds = sorted(set(data.fold[data.labelled].tolist()))
        if not set(TRAIN_FOLDS) & set(labelled_folds):
            raise ValueError(
                f"No record of folds 1-8 has labels (labelled folds: {labelled_folds}); the benchmark "
                "trains on folds 1-8. Check the strat_fold and scp_codes columns."
            )
        if TEST_FOLD in labelled_folds:
            scored_fold, selection = TEST_FOLD, "validation"
            selection_text = f"on validation fold {VALIDATION_FOLD}"
        elif VALIDATION_FOLD in labelled_folds:
            scored_fold, selection = VALIDATION_FOLD, "cv"
            selection_text = ("by two-fold cross-validation inside folds 1-8, folds 1-4 against 5-8 "
                              "(fold 10 has no labels, so fold 9 is scored)")
        else:
            raise ValueError(
                "Neither fold 9 nor fold 10 has labelled records: there is nothing to score. The benchmark "
                "scores fold 10, or fold 9 when fold 10's labels are withheld."
            )

        labelled = np.flatnonzero(data.labelled)
        if max_records is not None and max_records < len(labelled):
            rng = np.random.default_rng(random_state)
            labelled = np.sort(rng.choice(labelled, size=max_records, replace=False))
        use = np.zeros(len(data), bool)
        use[labelled] = True
        data.codes = [c if u else None for c, u in zip(data.codes, use)]
        say(f"{data.source}: {len(labelled)} labelled records used; scored fold {scored_fold}; choices {selection_text}")

        out_dir = Path(out) if out is not None else None
        cache = Path(cache) if cache is not None else out_dir / "cache" if out_dir is not None else None
        # Phases: read (data and signals), preprocess, embed (model and random twin), features, probes
        # (with their fit seconds per task and probe), bootstrap, write; embedding_s is the sum of
        # loading the weights, preprocessing and both embedding passes.
        timings = {"read_s": read_s}
        start = time.perf_counter()
        encoder = load_backbone(model)
        X_emb, embedder, timings["preprocess_s"], timings["embed_s"], X_in = _embed(
            data, labelled, encoder, cache=cache, batch_size=batch_size, precision=precision, device=device,
            verbose=verbose, distributed=distributed)  # fmt: skip
        X_rand, timings["embed_random_s"] = None, 0.0
        if random_baseline:
            random_encoder = random_twin(encoder, seed=random_state)
            same_input = resolve_contract(random_encoder) == resolve_contract(encoder)
            X_rand, embedder_rand, pre_s, timings["embed_random_s"], _ = _embed(
                data, labelled, random_encoder, cache=cache, batch_size=batch_size, precision=precision, device=device,
                verbose=verbose, distributed=distributed, X=X_in if same_input else None)  # fmt: skip
            timings["preprocess_s"] += pre_s
        del X_in
        timings["embedding_s"] = time.perf_counter() - start
        n_layers = embedder.n_layers_
        spec = embedder.layer_spec_
        position = np.full(len(data), -1)
        position[labelled] = np.arange(len(labelled))
        say(f"embedded {len(labelled)} records x {1 + random_baseline} models in {timings['embedding_s']:.0f} s")

        start = time.perf_counter()
        F = None
        if features:
            F, feature_names = _features(data, labelled, cache, n_jobs)
            say(f"clinical features ({F.shape[1]} columns) in {time.perf_counter() - start:.0f} s")
        timings["features_s"] = time.perf_counter() - start

        def layer(X, index, spec):
            return LayerSelector(layers=index, layer_spec=spec).fit_transform(X)

        layers = {f"layer {i}": layer(X_emb, i, spec) for i in range(n_layers)}
        # The random twin's layer is chosen on validation among every fourth layer (0, 4, 8, 12 for
        # a 12-block model): its curve is flat and far below, and this keeps the run to minutes.
        random_layers = (None if X_rand is None else
                         {f"layer {i}": layer(X_rand, i, embedder_rand.layer_spec_) for i in sorted({*range(0, n_layers, 4), n_layers - 1})})  # fmt: skip
        # PPA and PMA average one representation space; a CNN's stages are several, and
        # every layer, balanced on the training records, takes their place.
        one_stream = len({(layer.width, layer.stream) for layer in spec.layers[1:]}) == 1
        ppa = PPA(layer_spec=spec).fit_transform(X_emb) if one_stream else None

        task_rows, score_store, task_info, tasks_built, runs = [], {}, [], {}, {}
        start_probes = time.perf_counter()
        for task_name in tasks:
            task = build_task(data, task_name, scored_fold, selection)
            pos = position[task.rows]
            task_info.append({"task": task_name, "description": PTBXL_TASK_NAMES[task_name],
                              "classes_defined": task.n_defined, "classes_used": len(task.classes),
                              "n_train": len(task.train), "n_scored": len(task.scored),
                              "classes_absent_from_scored_fold": int(((task.Y[task.scored].sum(0) == 0)
                                                                      | (task.Y[task.scored].sum(0) == len(task.scored))).sum())})  # fmt: skip
            say(f"task {task_name}: {len(task.classes)} classes, {len(task.train)} train / {len(task.scored)} scored records")
            for k, probe in enumerate(probes):
                # The first probe chooses the random twin's layer; the others reuse its choice.
                runs[(task_name, probe)] = ProbeRun(PROBES[probe](task, task.Y, pos, Cs, random_state), task, pos,
                                                     layers, random_layers, ppa, X_emb, F, spec, random_state, pma,
                                                     chooses_random=k == 0)  # fmt: skip
            tasks_built[task_name] = task
        all_cells, seconds = run_probes(runs, n_jobs)
        timings["probes"] = {}
        for (task_name, probe), cells in all_cells.items():
            for rep, (scores, chosen, value, kind) in cells.items():
                score_store[(probe, task_name, rep)] = scores
                task_rows.append({"probe": probe, "task": task_name, "representation": rep, "chosen": chosen,
                                  "kind": kind, "validation": value})  # fmt: skip
            timings["probes"].setdefault(task_name, {})[probe] = seconds[(task_name, probe)]
            say(f"task {task_name}, {probe} probe: {len(cells)} representations, {seconds[(task_name, probe)]:.0f} s of fits")
        timings["probes_s"] = time.perf_counter() - start_probes

        start = time.perf_counter()
        table, claims = bootstrap(task_rows, score_store, tasks_built, n_layers, n_bootstrap, random_state, n_jobs)
        timings["bootstrap_s"] = time.perf_counter() - start
        # Titled with the model that ran (its card name and weights hash), not the option's spelling:
        # "default" or "random" alone would not say which weights the numbers belong to.
        from ecgsoup.backbones.stmem.weights import model_fingerprint

        model_label = f"{spec.model_name} (sha256 {model_fingerprint(embedder.model_)[:12]})"
        result = PTBXLResult(table, claims, pd.DataFrame(task_info), scored_fold, selection_text,
                             model_label, data.source, timings, n_bootstrap=n_bootstrap)  # fmt: skip
        start = time.perf_counter()
        if out_dir is not None:
            write_ptbxl_results(result, out_dir)
        timings["write_s"] = time.perf_counter() - start
        if out_dir is not None:  # the JSON already written lacks only its own writing time
            write_json(result, out_dir, "ptbxl")
        return result
