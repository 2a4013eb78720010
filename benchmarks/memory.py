"""Peak memory of ``LayerwiseEmbedder.transform`` on N vs 10 x N records.

Each record count runs in a **fresh subprocess** (so the peaks do not mix),
which builds the input by tiling the real bundled LUDB sample (100 Hz,
12 leads, 10 s, through ``ECGPreprocessor``) to the requested count, loads
the model, warms it up on one batch and then embeds all records once.  It
reports, from ``/proc/self/status``:

- ``peak``: the process's peak resident set (``VmHWM``) over its whole life;
- ``input``: the bytes of the input array (``X.nbytes``), which the caller
  owns and which is necessarily O(n);
- ``output``: the bytes of the returned embeddings, also O(n) by necessity:
  ``n x 13 layers x width`` float32 (9,984 bytes per record for the tiny
  model's width 192);
- ``overhead = peak - input - output``: the Python/torch runtime, the model,
  the activations of one batch and any temporaries.  This is the part that
  must stay flat when the number of records grows;
- ``transform_extra``: the peak reached *during* ``transform`` above the
  resident set just before it (the peak is reset through
  ``/proc/self/clear_refs`` first, after ``malloc_trim`` has handed freed
  set-up memory back to the OS), and the same minus the output;
- ``numpy_peak``: the peak of numpy allocations during a second
  ``transform``, traced exactly by ``tracemalloc`` (numpy reports its
  buffers to it; torch's per-batch tensors are not traced).  Unlike RSS
  this is deterministic, so O(n) temporaries show up as exact bytes per
  record: ``numpy_peak - output`` should not grow with n.

The verdict compares ``overhead`` at 10 x N with N (target ratio about 1.0)
and also states how many bytes per record it grows by, next to the output's
own bytes per record, so O(n) temporaries are visible even when the constant
runtime dominates the ratio.

Run::

    python benchmarks/memory.py [--records 40] [--factor 10] [--batch-size 32] [--threads 1]

``--threads 1`` (default) only speeds the run up on a busy machine; torch's
per-thread scratch space does not grow with the number of records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

TARGET_RATIO = 1.0
MiB = 2**20


def _status_kib(field: str) -> int:
    """A ``VmXXX`` field of ``/proc/self/status``, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` value 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so RSS before transform is comparable."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(n: int, batch_size: int, threads: int) -> dict:
    """Embed ``n`` tiled sample records in this process and report its memory."""
    import torch

    torch.set_num_threads(threads)
    from ecgsoup import ECGPreprocessor, LayerwiseEmbedder, load_sample
    from ecgsoup.backbones.stmem import default_model_path

    ds = load_sample()
    base = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names).fit_transform(ds.X)
    base = np.ascontiguousarray(base, dtype=np.float32)
    del ds
    reps = -(-n // len(base))
    X = np.concatenate([base] * reps)[:n] if reps > 1 else base[:n].copy()
    del base
    model = "default" if (default_model_path() / "config.json").exists() else "random:ecgsoup-100hz-tiny"
    emb = LayerwiseEmbedder(model=model, batch_size=batch_size).fit(X[:1])
    emb.transform(X[:batch_size])  # warm-up: one batch's activations, kernels
    _trim()
    rss_before = _status_kib("VmRSS") * 1024
    # Resetting the peak also resets ru_maxrss, so keep the set-up's peak first.
    peak_setup = _status_kib("VmHWM") * 1024
    reset = _reset_peak()
    E = emb.transform(X)
    hwm = _status_kib("VmHWM") * 1024
    import resource

    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    peak = max(peak_setup, hwm, ru_maxrss)
    import tracemalloc

    tracemalloc.start()
    E_traced = emb.transform(X)
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del E_traced
    return {
        "records": n,
        "model": model,
        "batch_size": batch_size,
        "torch_threads": threads,
        "input_bytes": int(X.nbytes),
        "output_bytes": int(E.nbytes),
        "output_shape": list(E.shape),
        "peak_bytes": int(peak),
        "peak_before_transform_bytes": int(peak_setup),
        "rss_before_transform_bytes": int(rss_before),
        "peak_reset_worked": reset,
        "transform_peak_bytes": int(hwm) if reset else None,
        "numpy_peak_bytes": int(numpy_peak),
        "numpy_peak_minus_output_bytes": int(numpy_peak - E.nbytes),
    }


def run_child(n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"child for {n} records failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["overhead_bytes"] = result["peak_bytes"] - result["input_bytes"] - result["output_bytes"]
    result["peak_minus_input_bytes"] = result["peak_bytes"] - result["input_bytes"]
    if result["transform_peak_bytes"] is not None:
        extra = result["transform_peak_bytes"] - result["rss_before_transform_bytes"]
        result["transform_extra_bytes"] = extra
        result["transform_extra_minus_output_bytes"] = extra - result["output_bytes"]
    return result


def markdown(small: dict, large: dict, summary_: dict) -> str:
    def mib(v):
        return "n/a" if v is None else f"{v / MiB:.1f}"

    rows = [
        ("peak RSS (VmHWM / ru_maxrss), total", "peak_bytes"),
        ("input array (X.nbytes)", "input_bytes"),
        ("output array (E.nbytes)", "output_bytes"),
        ("peak - input", "peak_minus_input_bytes"),
        ("**overhead = peak - input - output**", "overhead_bytes"),
        ("RSS just before transform", "rss_before_transform_bytes"),
        ("peak during transform above that", "transform_extra_bytes"),
        ("... minus the output", "transform_extra_minus_output_bytes"),
        ("numpy allocations during transform, peak (tracemalloc)", "numpy_peak_bytes"),
        ("... minus the output", "numpy_peak_minus_output_bytes"),
    ]
    n1, n2 = small["records"], large["records"]
    lines = [
        "# Memory of LayerwiseEmbedder.transform",
        "",
        f"Model: {small['model']} (width {small['output_shape'][1] // 15}), batch size "
        f"{small['batch_size']}, {small['torch_threads']} torch thread(s); real LUDB records "
        "tiled to the count; each count in a fresh process.",
        "",
        f"| MiB | {n1} records | {n2} records | ratio |",
        "|---|---|---|---|",
    ]
    for label, key in rows:
        a, b = small.get(key), large.get(key)
        ratio = f"{b / a:.2f}" if a and b is not None and a > 0 else "n/a"
        lines.append(f"| {label} | {mib(a)} | {mib(b)} | {ratio} |")
    s = summary_
    lines += [
        "",
        f"Overhead ratio ({n2} vs {n1} records): **{s['overhead_ratio']:.3f}** "
        f"(target ≈ {TARGET_RATIO:.1f}: {'met' if s['flat'] else 'not met'}). "
        f"The overhead grows by {s['overhead_growth_bytes_per_record']:.0f} bytes per record "
        f"(the output itself is {s['output_bytes_per_record']:.0f} bytes per record, the input "
        f"{s['input_bytes_per_record']:.0f}); the growth during transform beyond the output is "
        f"{s['transform_extra_growth_bytes_per_record']} bytes per record (RSS: noisy, the "
        "allocator keeps and re-takes freed pages). Exact, from tracemalloc: numpy's peak "
        f"during transform beyond the output grows by "
        f"**{s['numpy_temporaries_growth_bytes_per_record']:.0f} bytes per record**.",
        "",
        "The output is O(n) by necessity: n × 13 pooled layers × width float32. "
        "The input is the "
        "caller's array. Everything else — runtime, model, one batch of activations — "
        "should not depend on n; per-record growth beyond the output comes from "
        "temporaries proportional to n, which the tracemalloc row counts exactly; the RSS rows also move with what the allocator keeps.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=40)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.batch_size, args.threads)))
        return
    if not Path("/proc/self/status").exists():
        sys.exit("memory.py reads /proc/self/status and needs Linux.")
    small = run_child(args.records, args)
    print(f"{args.records} records: peak {small['peak_bytes'] / MiB:.1f} MiB", flush=True)
    large = run_child(args.records * args.factor, args)
    print(f"{large['records']} records: peak {large['peak_bytes'] / MiB:.1f} MiB", flush=True)
    extra = None
    if small.get("transform_extra_minus_output_bytes") is not None:
        extra = round((large["transform_extra_minus_output_bytes"]
                       - small["transform_extra_minus_output_bytes"])
                      / (large["records"] - small["records"]))
    summary_ = {
        "overhead_ratio": large["overhead_bytes"] / small["overhead_bytes"],
        "flat": abs(large["overhead_bytes"] / small["overhead_bytes"] - TARGET_RATIO) <= 0.1,
        "overhead_growth_bytes_per_record":
            (large["overhead_bytes"] - small["overhead_bytes"]) / (large["records"] - small["records"]),
        "output_bytes_per_record": small["output_bytes"] / small["records"],
        "input_bytes_per_record": small["input_bytes"] / small["records"],
        "transform_extra_growth_bytes_per_record": extra,
        "numpy_temporaries_growth_bytes_per_record":
            (large["numpy_peak_minus_output_bytes"] - small["numpy_peak_minus_output_bytes"])
            / (large["records"] - small["records"]),
    }
    md = markdown(small, large, summary_)
    json_path, md_path = write_results("memory", {"small": small, "large": large,
                                                  "summary": summary_, "target_ratio": TARGET_RATIO}, md,
                                        timing=False)  # bytes, not seconds: load does not change them
    print(md)
    print(f"\nwrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
