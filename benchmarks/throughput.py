"""Records per second of ``LayerwiseEmbedder.transform`` against a naive reference.

On real ECG (the bundled LUDB sample, 100 Hz, 12 leads, 10 s = one model
window per record, through ``ECGPreprocessor``) this times, **in one run and
interleaved repeat by repeat** (so that load from other jobs hits every
variant alike):

1. the **naive reference** of ``_reference.py`` (eager float32 under
   ``no_grad``, hand-written attention, forward hooks, batch 1, pooled after
   the fact), checked to equal the embedder's output to 1e-4;
2. ``LayerwiseEmbedder(...).transform(X)`` in float32 and bfloat16 at each
   batch size (``--batch-sizes``; sizes above the record count are skipped);
3. the **torch levers**, one at a time, on the encoder's forward pass over a
   fixed batch of ``--lever-batch`` windows: ``inference_mode`` vs
   ``no_grad``; ``scaled_dot_product_attention`` vs the hand-written
   attention; pooling each layer as it is produced vs keeping every layer's
   tokens and pooling after; for bfloat16, the embedder's bf16 copy of the
   weights (LayerNorm parameters kept float32) vs bf16 autocast (what the
   embedder did before) and vs a copy with bf16 LayerNorm parameters too;
   the default torch thread count vs one thread;
4. the machine's matmul throughput (float32 and bfloat16) on the matrix
   shapes the model runs, to express the embedder's speed as a fraction of
   what the hardware does on those shapes.

The tiny model is the bundled pretrained default when
``ecgsoup/weights/ecgsoup-100hz-tiny/config.json`` exists, otherwise a random
(untrained) tiny encoder; the base model is always random (untrained):
speed does not depend on the weights' values.

FLOPs per window (matrix products only, multiply-add = 2 FLOPs; LayerNorm,
softmax, GELU and the pooling are elementwise and not counted), with ``C``
leads, ``N`` patches of ``P`` samples, width ``D``, ``inner = heads *
dim_head``, MLP width ``M`` and ``S = C * (N + 2)`` tokens (SEP included)::

    patch embedding   2 * C*N * P * D
    per block         2*S*D*3*inner      (q, k, v)
                    + 2*S*inner*D        (output projection)
                    + 2 * 2*S*D*M        (MLP, two layers)
                    + 2*S*S*inner        (Q K^T)
                    + 2*S*S*inner        (attention x V)
    total             patch embedding + depth * per block

A record costs ``n_windows`` times this (1 for 10 s at 100 Hz).

Run (small defaults keep it to a few minutes on a busy 2-core CPU)::

    python benchmarks/throughput.py [--sizes tiny base] [--batch-sizes 1 4 16 64]
        [--device cpu|cuda] [--records 16] [--base-records 4] [--repeats 3]
        [--lever-batch 2] [--probe]

The matmul peak is timed inside the same interleaved loop (3 products per
timed call), so it sees the same load as the embedder.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, write_results  # noqa: E402
from _reference import NaiveEncoder, naive_embed  # noqa: E402

from ecgsoup import ECGPreprocessor, LayerwiseEmbedder, load_sample  # noqa: E402
from ecgsoup.backbones.stmem import default_model_path  # noqa: E402
from ecgsoup.signal import zscore  # noqa: E402

TARGET_SPEEDUP = 3.0
TARGET_PEAK_FRACTION = 0.5
TARGET_COSINE = 0.999
EQUALITY_TOL = 1e-4
PRECISIONS = ("float32", "bfloat16")


# -- inputs and models ----------------------------------------------------------------
def load_records(n: int) -> np.ndarray:
    """``n`` model-ready LUDB records, flat lead-major ``(n, 12 * 1000)`` float32.

    The sample has 200 records; more are obtained by repeating it.
    """
    ds = load_sample()
    prep = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names)
    X = prep.fit_transform(ds.X).astype(np.float32)
    if n > len(X):
        X = np.concatenate([X] * -(-n // len(X)))
    return np.ascontiguousarray(X[:n])


def choose_model(size: str) -> tuple[str, str]:
    """Model string for the embedder, and a sentence saying what it is."""
    if size == "tiny" and (default_model_path() / "config.json").exists():
        return "default", "bundled pretrained ecgsoup-100hz-tiny"
    return (
        f"random:ecgsoup-100hz-{size}",
        f"random (untrained) ecgsoup-100hz-{size}"
        + (": bundled weights not present" if size == "tiny" else ": same speed as pretrained"),
    )


# -- FLOPs and matmul peak ------------------------------------------------------------
def flops_per_window(config) -> dict:
    """Matrix-product FLOPs of one window's forward pass (formula in the module docstring)."""
    C, N, P, D = config.n_leads, config.n_patches, config.patch_size, config.width
    inner, M = config.heads * config.dim_head, config.mlp_dim
    S = C * (N + 2)
    patch = 2 * C * N * P * D
    linear = 2 * S * D * 3 * inner + 2 * S * inner * D + 2 * 2 * S * D * M
    attention = 4 * S * S * inner
    return {
        "tokens": S,
        "patch_embedding": patch,
        "block_linear": linear,
        "block_attention": attention,
        "total": patch + config.depth * (linear + attention),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MATMUL_CALLS = 3  # matmuls per timed call: one alone is too short to time on a busy machine


def matmul_jobs(config, rows: int, device: torch.device) -> dict:
    """``(dtype, shape name) -> (function, FLOPs per call)`` for the model's linear layers.

    The shapes are those of the model's q/k/v, first and second MLP layer at
    ``rows = batch * tokens``; they are timed in the same interleaved loop as
    the embedder, so the peak and the embedder see the same machine load.
    """
    D, inner, M = config.width, config.heads * config.dim_head, config.mlp_dim
    shapes = {"qkv": (rows, D, 3 * inner), "fc1": (rows, D, M), "fc2": (rows, M, D)}
    generator = torch.Generator().manual_seed(0)
    jobs = {}
    for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        for name, (m, k, n) in shapes.items():
            a = torch.randn(m, k, generator=generator).to(device, dtype)
            b = torch.randn(k, n, generator=generator).to(device, dtype)

            def run(a=a, b=b):
                for _ in range(MATMUL_CALLS):
                    out = a @ b
                return out

            jobs[(dtype_name, name)] = (run, MATMUL_CALLS * 2 * m * k * n, [m, k, n])
    return jobs


# -- the levers -----------------------------------------------------------------------
def _pool_all(layers: list[torch.Tensor], n_leads: int) -> torch.Tensor:
    pooled = []
    for tokens in layers:
        per_lead = tokens.reshape(tokens.shape[0], n_leads, -1, tokens.shape[-1])
        pooled.append(per_lead[:, :, 1:-1].mean(dim=(1, 2)))
    return torch.stack(pooled, dim=1)


BF16_EMBEDDER = "bf16 weights, fp32 LayerNorm params (embedder)"


def lever_jobs(encoder, bf16_encoder, windows: torch.Tensor) -> dict:
    """Name -> zero-argument function returning ``(B, L+1, D)`` pooled layers.

    The first entry is what the embedder does for float32; every other one
    changes exactly one thing against it (or, for the bfloat16 ones, against
    the embedder's bfloat16 path, ``bf16_encoder``: the embedder's own cached
    bf16 copy of ``encoder``).
    """
    device = windows.device
    leads = windows.shape[1]
    naive = NaiveEncoder(encoder).eval()
    all_bf16_encoder = copy.deepcopy(encoder).to(torch.bfloat16)
    threads = torch.get_num_threads()

    def embedder_fp32():
        with torch.inference_mode():
            return encoder.pooled_layers(windows)

    def no_grad():
        with torch.no_grad():
            return encoder.pooled_layers(windows)

    def hand_attention():
        with torch.inference_mode():
            hidden = naive.embed(windows)
            pooled = [hidden]
            for block in naive.blocks:
                hidden = block(hidden)
                pooled.append(hidden)
            return _pool_all(pooled, leads)

    def keep_all_then_pool():
        with torch.inference_mode():
            return _pool_all(encoder.forward_layers(windows), leads)

    def weights_bf16():
        with torch.inference_mode():
            return bf16_encoder.pooled_layers(windows.to(torch.bfloat16))

    def autocast_bf16():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return encoder.pooled_layers(windows)

    def all_bf16():
        with torch.inference_mode():
            return all_bf16_encoder.pooled_layers(windows.to(torch.bfloat16))

    jobs = {
        "fp32, inference_mode, SDPA, pool inline (embedder)": embedder_fp32,
        "fp32, no_grad instead of inference_mode": no_grad,
        "fp32, hand-written attention instead of SDPA": hand_attention,
        "fp32, keep every layer's tokens, pool after": keep_all_then_pool,
        BF16_EMBEDDER: weights_bf16,
        "bf16 autocast instead of bf16 weights (embedder before this change)": autocast_bf16,
        "bf16 LayerNorm params too (all-bf16 copy)": all_bf16,
    }
    if device.type == "cpu" and threads > 1:

        def one_thread(fn):
            def run():
                torch.set_num_threads(1)
                try:
                    return fn()
                finally:
                    torch.set_num_threads(threads)

            return run

        jobs[f"fp32, 1 torch thread instead of {threads}"] = one_thread(embedder_fp32)
        jobs[f"bf16 weights, 1 torch thread instead of {threads}"] = one_thread(weights_bf16)
    return jobs


# -- measurements ---------------------------------------------------------------------
def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    """Cosine similarity of ``(n, L, D)`` embeddings, per record and layer and per whole row."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    per_layer = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    per_row = (fa * fb).sum(-1) / (np.linalg.norm(fa, axis=-1) * np.linalg.norm(fb, axis=-1))
    return {
        "per_layer_min": float(per_layer.min()),
        "per_layer_mean": float(per_layer.mean()),
        "worst_layer": int(np.unravel_index(per_layer.argmin(), per_layer.shape)[1]),
        "per_row_min": float(per_row.min()),
    }


def bench_size(size: str, X: np.ndarray, args, device: torch.device) -> dict:
    model, model_note = choose_model(size)
    n = len(X)
    batch_sizes = [b for b in args.batch_sizes if b <= n]
    skipped = [b for b in args.batch_sizes if b > n]
    embedders = {}
    for precision in PRECISIONS:
        for batch in batch_sizes:
            embedders[(precision, batch)] = LayerwiseEmbedder(
                model=model, batch_size=batch, precision=precision, device=str(device)
            ).fit(X[:1])
    first = next(iter(embedders.values()))
    encoder, config = first.model_, first.config_
    n_layers, width = first.n_layers_, first.dim_
    X3 = X.reshape(n, config.n_leads, -1)
    lever_batch = min(args.lever_batch, n)
    windows = torch.from_numpy(zscore(X3[:lever_batch, :, : config.n_samples], axis=-1)).to(device)
    bf16_encoder = embedders[("bfloat16", batch_sizes[0])]._forward_model()
    levers = lever_jobs(encoder, bf16_encoder, windows)

    jobs = {"reference": lambda: naive_embed(encoder, X3)}
    for (precision, batch), emb in embedders.items():
        jobs[f"embedder {precision} batch {batch}"] = lambda emb=emb: emb.transform(X)
    for name, fn in levers.items():
        jobs[f"lever: {name}"] = fn
    flops = flops_per_window(config)
    matmuls = matmul_jobs(config, max(batch_sizes) * flops["tokens"], device)
    for (dtype_name, shape), (fn, _, _) in matmuls.items():
        jobs[f"matmul {dtype_name} {shape}"] = fn

    # Warm-up: first calls pay for allocation, kernel selection, autocast set-up.
    naive_embed(encoder, X3[:1])
    for emb in embedders.values():
        emb.transform(X[: min(n, emb.batch_size)])
    for fn in levers.values():
        fn()
    for fn, _, _ in matmuls.values():
        fn()
    _sync(device)

    seconds = {name: [] for name in jobs}
    outputs = {}
    for repeat in range(args.repeats):
        for name, fn in jobs.items():  # interleaved: every variant sees the same load
            start = time.perf_counter()
            out = fn()
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
            if repeat == 0 and not name.startswith("matmul"):
                outputs[name] = out
        print(f"  {size}: repeat {repeat + 1}/{args.repeats} done", flush=True)

    n_windows = 1 if X3.shape[2] == config.n_samples else None
    assert n_windows == 1, "the sample records are one window long"
    peak = {}
    for dtype_name in PRECISIONS:
        per_shape = {
            shape: {"shape_mkn": mkn,
                    "gflops": f / statistics.median(seconds[f"matmul {dtype_name} {shape}"]) / 1e9,
                    **summary(seconds[f"matmul {dtype_name} {shape}"])}
            for (d, shape), (_, f, mkn) in matmuls.items() if d == dtype_name
        }
        peak[dtype_name] = {"shapes": per_shape,
                            "peak_gflops": max(v["gflops"] for v in per_shape.values())}

    def rate(name: str, items: int) -> dict:
        stats = summary(seconds[name])
        rps = items / stats["median_s"]
        return {**stats, "items": items, "records_per_s": rps, "gflops": rps * flops["total"] / 1e9}

    reference = rate("reference", n)
    reference_out = outputs["reference"]
    rows = []
    for (precision, batch) in embedders:
        name = f"embedder {precision} batch {batch}"
        r = rate(name, n)
        r.update(
            precision=precision,
            batch_size=batch,
            speedup_vs_reference=r["records_per_s"] / reference["records_per_s"],
            fraction_of_peak=r["gflops"] / peak[precision]["peak_gflops"],
        )
        rows.append(r)
    pooled = {
        p: outputs[f"embedder {p} batch {max(batch_sizes)}"][:, : n_layers * width].reshape(
            n, n_layers, width
        )
        for p in PRECISIONS
    }
    equality = float(np.abs(pooled["float32"] - reference_out).max())
    lever_base = rate("lever: fp32, inference_mode, SDPA, pool inline (embedder)", lever_batch)
    lever_bf16 = rate(f"lever: {BF16_EMBEDDER}", lever_batch)
    fp32_lever_out = outputs["lever: fp32, inference_mode, SDPA, pool inline (embedder)"]
    lever_rows = []
    for name in levers:
        r = rate(f"lever: {name}", lever_batch)
        base = lever_bf16 if name.startswith("bf16") else lever_base
        out = outputs[f"lever: {name}"].float().cpu().numpy()
        r.update(
            lever=name,
            speed_vs_its_baseline=r["records_per_s"] / base["records_per_s"],
            baseline=BF16_EMBEDDER if name.startswith("bf16") else "fp32 embedder",
            cosine_vs_fp32=cosine_stats(out, fp32_lever_out.float().cpu().numpy()),
        )
        lever_rows.append(r)
    best = {p: max((r for r in rows if r["precision"] == p), key=lambda r: r["records_per_s"]) for p in PRECISIONS}
    return {
        "size": size,
        "model": model,
        "model_note": model_note,
        "config": config.name,
        "records": n,
        "batch_sizes": batch_sizes,
        "batch_sizes_skipped_above_record_count": skipped,
        "flops_per_window": flops,
        "flops_per_record": flops["total"] * n_windows,
        "matmul_peak": peak,
        "reference": reference,
        "reference_max_abs_diff_vs_embedder_fp32": equality,
        "reference_equal_to_1e-4": equality <= EQUALITY_TOL,
        "embedder": rows,
        "best": {p: {"batch_size": b["batch_size"], "records_per_s": b["records_per_s"],
                     "speedup_vs_reference": b["speedup_vs_reference"],
                     "fraction_of_peak": b["fraction_of_peak"]} for p, b in best.items()},
        "bf16_vs_fp32_cosine": cosine_stats(pooled["bfloat16"], pooled["float32"]),
        "lever_batch": lever_batch,
        "levers": lever_rows,
    }


def probe_check(device: torch.device) -> dict:
    """Hypertrophy probe AUC per layer, float32 vs bfloat16 embeddings (tiny model, 200 records)."""
    from ecgsoup.evaluate import layer_probe

    ds = load_sample()
    X = load_records(len(ds.X))
    y = (ds.metadata["hypertrophy"].astype(str).str.strip() != "").to_numpy().astype(int)
    model, note = choose_model("tiny")
    scores = {}
    for precision in PRECISIONS:
        embedder = LayerwiseEmbedder(model=model, precision=precision, device=str(device)).fit(X)
        E = embedder.transform(X)
        result = layer_probe(E, y, cv=5, fusions=(), layer_spec=embedder.layer_spec_, random_state=0)
        scores[precision] = result["mean"].round(4).to_dict()
    diffs = [abs(scores["float32"][k] - scores["bfloat16"][k]) for k in scores["float32"]]
    return {"model_note": note, "target": "hypertrophy non-empty", "records": len(X),
            "positives": int(y.sum()), "auc": scores, "max_abs_auc_difference": max(diffs)}


# -- report ---------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def markdown(results: dict) -> str:
    lines = [
        "# Embedding throughput",
        "",
        f"Device: {results['device_name']}. Records: real LUDB (bundled sample, 100 Hz, "
        "12 leads, 10 s = one window each) through `ECGPreprocessor`. "
        "Every variant was timed in the same run, interleaved repeat by repeat; "
        "numbers are medians over repeats; the load and the other processes' CPU "
        "share during the run are under Run.",
        "",
    ]
    for s in results["sizes"]:
        peak = s["matmul_peak"]
        flops = s["flops_per_window"]
        lines += [
            f"## {s['config']} ({s['model_note']})",
            "",
            f"{s['records']} records; {flops['total'] / 1e9:.2f} GFLOP per record "
            f"({flops['tokens']} tokens); matmul peak on this model's shapes: "
            f"fp32 {peak['float32']['peak_gflops']:.1f} GFLOP/s, "
            f"bf16 {peak['bfloat16']['peak_gflops']:.1f} GFLOP/s. "
            f"Reference equals the embedder (fp32) to {s['reference_max_abs_diff_vs_embedder_fp32']:.1e} "
            f"(max abs difference; tolerance 1e-4: {'ok' if s['reference_equal_to_1e-4'] else 'FAILED'}).",
            "",
            "| variant | batch | records/s | median s | min-max s | × reference | GFLOP/s | % of peak (same dtype) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        ref = s["reference"]
        lines.append(
            f"| naive reference (fp32, no_grad, hand attention, hooks) | 1 | {ref['records_per_s']:.3f} "
            f"| {ref['median_s']:.2f} | {ref['min_s']:.2f}-{ref['max_s']:.2f} | 1.00 | {ref['gflops']:.1f} "
            f"| {100 * ref['gflops'] / peak['float32']['peak_gflops']:.0f}% |"
        )
        for r in s["embedder"]:
            lines.append(
                f"| embedder {r['precision']} | {r['batch_size']} | {r['records_per_s']:.3f} "
                f"| {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} "
                f"| {r['speedup_vs_reference']:.2f} | {r['gflops']:.1f} | {100 * r['fraction_of_peak']:.0f}% |"
            )
        if s["batch_sizes_skipped_above_record_count"]:
            lines.append("")
            lines.append(
                f"Batch sizes {s['batch_sizes_skipped_above_record_count']} skipped: larger than "
                "the record count (raise `--records` / `--base-records`)."
            )
        cos = s["bf16_vs_fp32_cosine"]
        lines += [
            "",
            f"bf16 vs fp32 embeddings: cosine per record and layer min {cos['per_layer_min']:.5f} "
            f"(worst layer {cos['worst_layer']}), mean {cos['per_layer_mean']:.5f}; "
            f"whole row min {cos['per_row_min']:.5f}.",
            "",
            f"Levers, each on the encoder's forward pass over {s['lever_batch']} windows "
            "(one change against the fp32 embedder path, or for bf16 rows against the embedder's "
            "bf16 path: bf16 weights, fp32 LayerNorm parameters):",
            "",
            "| lever | records/s | median s | speed vs its baseline | cosine vs fp32 (min per layer) |",
            "|---|---|---|---|---|",
        ]
        for r in s["levers"]:
            lines.append(
                f"| {r['lever']} | {r['records_per_s']:.3f} | {r['median_s']:.2f} "
                f"| {r['speed_vs_its_baseline']:.2f}× | {r['cosine_vs_fp32']['per_layer_min']:.5f} |"
            )
        lines.append("")
    lines += ["## Targets", "", "| target | value | verdict |", "|---|---|---|"]
    for s in results["sizes"]:
        for p in PRECISIONS:
            b = s["best"][p]
            lines.append(
                f"| ≥ {TARGET_SPEEDUP:g}× the naive reference, {s['config']} {p} "
                f"(best batch {b['batch_size']}) | {b['speedup_vs_reference']:.2f}× "
                f"| {_verdict(b['speedup_vs_reference'] >= TARGET_SPEEDUP)} |"
            )
        cos = s["bf16_vs_fp32_cosine"]["per_layer_min"]
        lines.append(
            f"| bf16 cosine ≥ {TARGET_COSINE}, {s['config']} (min over records and layers) "
            f"| {cos:.5f} | {_verdict(cos >= TARGET_COSINE)} |"
        )
    for s in results["sizes"]:
        if s["size"] == "base":
            f = s["best"]["bfloat16"]["fraction_of_peak"]
            lines.append(
                f"| ≥ {100 * TARGET_PEAK_FRACTION:.0f}% of bf16 matmul peak, base model "
                f"| {100 * f:.0f}% | {_verdict(f >= TARGET_PEAK_FRACTION)} |"
            )
    if results.get("probe"):
        pr = results["probe"]
        lines += [
            "",
            f"## Probe check ({pr['target']}, {pr['records']} records, {pr['model_note']})",
            "",
            "| layer | AUC fp32 | AUC bf16 |",
            "|---|---|---|",
        ]
        for k in pr["auc"]["float32"]:
            lines.append(f"| {k} | {pr['auc']['float32'][k]:.4f} | {pr['auc']['bfloat16'][k]:.4f} |")
        lines.append("")
        lines.append(f"Largest AUC difference: {pr['max_abs_auc_difference']:.4f}.")
    lines += [
        "",
        "FLOPs per window: patch embedding 2·C·N·P·D, plus per block "
        "2·S·D·3·inner + 2·S·inner·D + 4·S·D·M + 4·S²·inner (S = C·(N+2) tokens); "
        "see the docstring of `benchmarks/throughput.py`. Peak = the fastest of the "
        "model's own matmul shapes (qkv, fc1, fc2 at the largest batch), median of repeats.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=["tiny", "small", "base"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--records", type=int, default=16, help="records for the tiny/small model")
    parser.add_argument("--base-records", type=int, default=4, help="records for the base model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lever-batch", type=int, default=2, help="windows per lever forward pass")
    parser.add_argument("--probe", action="store_true", help="also compare probe AUCs fp32 vs bf16")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU available on this machine "
              f"(torch {torch.__version__}); nothing measured, no results written.")
        return
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} torch threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    torch.manual_seed(0)
    X_all = load_records(max(args.records, args.base_records))
    sizes = []
    for size in args.sizes:
        n = args.base_records if size == "base" else args.records
        print(f"{size}: {n} records on {device_name}", flush=True)
        sizes.append(bench_size(size, X_all[:n], args, device))
    results = {"device": str(device), "device_name": device_name, "sizes": sizes,
               "torch_threads": torch.get_num_threads()}
    if args.probe:
        print("probe check ...", flush=True)
        results["probe"] = probe_check(device)
    md = markdown(results)
    json_path, md_path = write_results("throughput", results, md)
    print(md)
    print(f"\nwrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
