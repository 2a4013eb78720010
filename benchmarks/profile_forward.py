"""Where the forward pass spends its time, and which candidate speed-ups win.

For the tiny and base encoders, in float32 and bfloat16, at several batch
sizes (windows per forward), this

1. times ``STMEMEncoder.pooled_layers`` on z-scored windows of real LUDB
   records (median of ``--repeats`` calls, all variants interleaved in each
   round, so load changes hit them alike), and states the share of the
   matrix-product peak it reaches (peak: one ``torch.matmul`` of the model's
   widest linear-layer shape, timed in the same rounds);
2. profiles one call of each with ``torch.profiler`` and groups the operators'
   own CPU time into the big matrix products (``linear``/``addmm``/``mm``),
   attention (``scaled_dot_product_attention`` and its kernels), LayerNorm,
   GELU, residual adds, pooling (means, stack), and layout work (reshape,
   permute, copies, concatenation, casts);
3. tries the candidates, each checked against float32 (cosine of the pooled
   layers) and kept only where it is faster and agrees:

   - ``torch.compile`` (inductor) of the bfloat16 encoder, with its one-off
     compile time next to the time of embedding 200 records without it;
   - int8 dynamic quantisation of the Linear layers (``torch.ao``), float32
     activations;
   - bfloat16 with one torch thread per core versus the default.

Run on a quiet machine (the result writer refuses timings taken while other
processes are busy)::

    python benchmarks/profile_forward.py [--sizes tiny base] [--batch-sizes 4 16 64] [--base-batch-sizes 4 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_data_path, write_results  # noqa: E402
from throughput import flops_per_window  # noqa: E402

from ecgsoup.backbones.stmem import get_config, load_model, random_model  # noqa: E402
from ecgsoup.leads import ECGSOUP_LEAD_ORDER  # noqa: E402
from ecgsoup.signal import lead_indices, resample, zscore  # noqa: E402

CATEGORIES = [
    ("matrix products", ("addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul", "mkldnn", "onednn")),
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention", "softmax")),
    ("LayerNorm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("residual adds", ("aten::add",)),
    ("pooling", ("aten::mean", "aten::stack", "aten::sum")),
    ("layout (reshape, permute, copy, cat, cast)", (
        "copy_", "aten::cat", "aten::reshape", "aten::view", "aten::permute", "aten::transpose",
        "aten::contiguous", "aten::clone", "aten::to", "aten::_to_copy", "aten::expand", "aten::slice",
        "aten::unbind", "aten::select", "aten::flatten", "aten::t", "aten::empty", "as_strided",
    )),
]


def load_windows(n: int, n_samples: int) -> torch.Tensor:
    """``n`` z-scored 10-s windows of real LUDB records, (n, 12, n_samples), model lead order."""
    data = np.load(shared_data_path() / "ludb" / "ludb_12lead_500hz.npz")
    x = resample(data["x"][:n].astype(np.float32) / 1000.0, float(data["fs"]), 100.0)
    x = x[:, :, lead_indices(list(data["lead_names"]), ECGSOUP_LEAD_ORDER)].transpose(0, 2, 1)
    return torch.from_numpy(np.ascontiguousarray(zscore(x[:, :, :n_samples], axis=-1)))


def encoder_for(size: str):
    if size == "tiny":
        return load_model("default").eval(), "bundled pretrained ecgsoup-100hz-tiny"
    return random_model(get_config(f"ecgsoup-100hz-{size}"), seed=0).eval(), f"random ecgsoup-100hz-{size}"


def category_of(name: str) -> str:
    for category, needles in CATEGORIES:
        if any(needle in name for needle in needles):
            return category
    return "other"


def profile_call(fn) -> dict:
    """Own CPU time per category (ms) of one call, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    totals = defaultdict(float)
    for event in prof.key_averages():
        totals[category_of(event.key)] += event.self_cpu_time_total / 1000.0
    return dict(totals)


def cosine_per_layer(a: torch.Tensor, b: torch.Tensor) -> float:
    """Lowest, over layers, of the mean cosine between two (windows, layers, width) outputs."""
    a, b = a.float(), b.float()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # (windows, layers)
    return float(cos.mean(dim=0).min())


def matmul_peak_fn(rows: int, width: int, mlp: int, dtype):
    a = torch.randn(rows, width, dtype=dtype)
    w = torch.randn(width, mlp, dtype=dtype)
    return lambda: a @ w, 2 * rows * width * mlp


def bench_size(size, windows_all, args) -> dict:
    encoder, note = encoder_for(size)
    config = encoder.config
    bf16 = copy.deepcopy(encoder).to(torch.bfloat16).eval()
    tokens = config.n_leads * (config.n_patches + 2)
    flops = flops_per_window(config)["total"]
    jobs, meta = {}, {}
    for batch in args.batch_sizes:
        x = windows_all[:batch]
        xb = x.to(torch.bfloat16)
        jobs[("float32", batch)] = lambda x=x: encoder.pooled_layers(x)
        jobs[("bfloat16", batch)] = lambda x=xb: bf16.pooled_layers(x)
        for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            fn, mm_flops = matmul_peak_fn(batch * tokens, config.width, config.mlp_dim, dtype)
            jobs[(f"matmul {dtype_name}", batch)] = fn
            meta[(f"matmul {dtype_name}", batch)] = mm_flops

    # Candidates at the default batch.
    batch = args.candidate_batch
    x, xb = windows_all[:batch], windows_all[:batch].to(torch.bfloat16)
    torch.set_grad_enabled(False)  # a frozen encoder: no autograd anywhere below
    reference = encoder.pooled_layers(x)
    candidates = {}
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(encoder), {torch.nn.Linear}, dtype=torch.qint8)
    jobs[("int8 dynamic", batch)] = lambda: quantized.pooled_layers(x)
    candidates["int8 dynamic"] = {"cosine_min_layer": cosine_per_layer(quantized.pooled_layers(x), reference)}
    if not args.no_compile:
        compiled = torch.compile(copy.deepcopy(bf16).pooled_layers, dynamic=False)
        start = time.perf_counter()
        out = compiled(xb)
        compile_s = time.perf_counter() - start
        jobs[("bfloat16 compiled", batch)] = lambda: compiled(xb)
        candidates["bfloat16 + torch.compile"] = {
            "compile_s": compile_s, "cosine_min_layer": cosine_per_layer(out, reference)}
    candidates["bfloat16"] = {"cosine_min_layer": cosine_per_layer(bf16.pooled_layers(xb), reference)}

    for fn in jobs.values():  # warm-up
        fn()
    seconds = defaultdict(list)
    with torch.inference_mode():
        for _ in range(args.repeats):
            for key, fn in jobs.items():  # interleaved: every variant once per round
                start = time.perf_counter()
                fn()
                seconds[key].append(time.perf_counter() - start)
    median = {key: statistics.median(v) for key, v in seconds.items()}

    rows = []
    for batch in args.batch_sizes:
        for precision in ("float32", "bfloat16"):
            peak = meta[(f"matmul {precision}", batch)] / median[(f"matmul {precision}", batch)]
            achieved = flops * batch / median[(precision, batch)]
            with torch.inference_mode():
                x = windows_all[:batch]
                fn = jobs[(precision, batch)]
                categories = profile_call(fn)
            total = sum(categories.values())
            rows.append({
                "precision": precision, "batch": batch, "median_s": median[(precision, batch)],
                "windows_per_s": batch / median[(precision, batch)],
                "gflops": achieved / 1e9, "matmul_peak_gflops": peak / 1e9, "share_of_peak": achieved / peak,
                "profile_ms": categories, "profile_share": {k: v / total for k, v in categories.items()},
            })
    base_bf16 = median[("bfloat16", args.candidate_batch)]
    base_fp32 = median[("float32", args.candidate_batch)]
    for name, key in (("int8 dynamic", ("int8 dynamic", args.candidate_batch)),
                      ("bfloat16 + torch.compile", ("bfloat16 compiled", args.candidate_batch))):
        if key in median:
            candidates[name].update(median_s=median[key], speed_vs_fp32=base_fp32 / median[key],
                                    speed_vs_bf16=base_bf16 / median[key])
    candidates["bfloat16"].update(median_s=base_bf16, speed_vs_fp32=base_fp32 / base_bf16, speed_vs_bf16=1.0)
    return {"size": size, "model": note, "tokens_per_window": tokens, "flops_per_window": flops,
            "rows": rows, "candidates": candidates, "raw_s": {f"{k[0]} batch {k[1]}": v for k, v in seconds.items()}}


def markdown(results, args) -> str:
    lines = ["# Forward pass: profile and candidates", "",
             f"`STMEMEncoder.pooled_layers` on z-scored windows of real LUDB records, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats} interleaved "
             "rounds. Share of peak: model FLOPs per second over the FLOPs per second of one matmul of the "
             "model's widest linear layer (same rows, same dtype), timed in the same rounds.", ""]
    cats = [c for c, _ in CATEGORIES] + ["other"]
    for size in results["sizes"]:
        lines += [f"## {size['size']} ({size['model']}, {size['tokens_per_window']} tokens per window)", "",
                  "| precision | batch | windows/s | share of matmul peak | "
                  + " | ".join(cats) + " |", "|---|---|---|---|" + "---|" * len(cats)]
        for r in size["rows"]:
            shares = " | ".join(f"{100 * r['profile_share'].get(c, 0):.0f}%" for c in cats)
            lines.append(f"| {r['precision']} | {r['batch']} | {r['windows_per_s']:.1f} | "
                         f"{100 * r['share_of_peak']:.0f}% | {shares} |")
        lines += ["", f"Candidates at batch {args.candidate_batch}:", "",
                  "| variant | median s | vs float32 | vs bfloat16 | lowest per-layer cosine to float32 | note |",
                  "|---|---|---|---|---|---|"]
        for name, c in size["candidates"].items():
            note = f"compile {c['compile_s']:.1f} s once" if "compile_s" in c else ""
            lines.append(f"| {name} | {c.get('median_s', float('nan')):.4f} | {c.get('speed_vs_fp32', float('nan')):.2f}x | "
                         f"{c.get('speed_vs_bf16', float('nan')):.2f}x | {c['cosine_min_layer']:.5f} | {note} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=["tiny", "small", "base"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument("--base-batch-sizes", nargs="+", type=int, default=[4, 16],
                        help="batch sizes for the small and base models (a base batch of 64 takes ~30 s per call)")
    parser.add_argument("--candidate-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidate")
    args = parser.parse_args(argv)
    n = max(args.batch_sizes + args.base_batch_sizes + [args.candidate_batch])
    windows = load_windows(n, 1000)
    sizes = []
    for size in args.sizes:
        sized = argparse.Namespace(**vars(args))
        if size != "tiny":
            sized.batch_sizes = args.base_batch_sizes
        sizes.append(bench_size(size, windows, sized))
    results = {"sizes": sizes,
               "batch_sizes": args.batch_sizes, "candidate_batch": args.candidate_batch}
    md = markdown(results, args)
    print(md)
    write_results("profile_forward", results, md)


if __name__ == "__main__":
    main()
