"""Records per second of each backbone family: ecgsoup's all-layer pass against the original code.

For every family this builds the **original implementation** with seeded
random weights, saves it in the original checkpoint layout, loads that file
through ecgsoup (``load_backbone("<family>:<path>")``), checks that both give
the same pooled layers (float32), and then times, **interleaved repeat by
repeat** so that load from other jobs hits every variant alike:

* ecgsoup's ``pooled_layers`` (every layer pooled as it is computed), and
* the original forward pass with every hidden state: HuBERT-ECG as
  ``transformers.HubertModel(output_hidden_states=True)`` mean-pooled per
  layer; ECGFounder as the authors' ``Net1D`` with forward hooks on the stem
  and every stage, each globally averaged; MERL as the authors' linear-probe
  ``ResNet18`` with hooks on the stem's output and the four stages, each
  globally averaged; ECG-JEPA as the authors'
  ``MaskTransformer.representation`` (ViT-B) with forward hooks on the token
  projection and every block, each pooled as the authors pool the last one
  (final LayerNorm per token, then the mean);
  ECG-FM as fairseq-signals'
  ``Wav2Vec2CMSCModel.extract_features`` with hooks on the input of the
  first transformer layer and every layer's output, each mean-pooled,

in float32 and in bfloat16 (both as bfloat16 copies of the weights), on a
batch of real ECG windows (LUDB records through ``ECGPreprocessor`` with the
family's contract).  Speed does not depend on the weights' values, so random
weights measure what downloaded ones would.

It also measures the peak resident memory of ``LayerwiseEmbedder`` over ``n``
and ``4 n`` records (each in a fresh process): memory must stay flat in the
number of records.

References (test-time only, never runtime dependencies): ``transformers``
(the ``parity`` extra) for HuBERT-ECG; a checkout of the ECGFounder
repository named by ``ECGSOUP_REFERENCE_ECGFOUNDER`` for ECGFounder; a
checkout of MERL-ICML2024 named by ``ECGSOUP_REFERENCE_MERL`` for MERL; a
checkout of Kim's ECG_JEPA repository named by ``ECGSOUP_REFERENCE_ECG_JEPA``
for ECG-JEPA; a checkout of fairseq-signals named by ``ECGSOUP_REFERENCE_ECG_FM``
for ECG-FM.  A family whose reference is missing is skipped with the reason.

Run::

    python benchmarks/backbones.py [--families hubert-ecg ecgfounder merl ecg-jepa ecg-fm] [--batch 16]
        [--repeats 5] [--memory-records 8]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, shared_data_path, write_results  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "scripts"))


# -- the references -----------------------------------------------------------------------
def _hubert(folder: Path):
    """(reference forward -> pooled layers, path for ecgsoup) of a seeded HubertModel, small size."""
    if importlib.util.find_spec("transformers") is None:
        raise RuntimeError("transformers is not installed (pip install 'ecgsoup[parity]')")
    import make_golden_hubert_ecg as golden
    from safetensors.torch import save_file

    config = golden.hf_config(golden.SMALL)
    model = golden.build_reference(config, seed=0, attn_implementation="sdpa")
    state = golden.original_state_dict(model, config, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))

    def forward(net, x):
        out = net(x.reshape(x.shape[0], -1), output_hidden_states=True)
        return torch.cat([h.mean(dim=1) for h in out.hidden_states], dim=1)

    return model, forward, f"hubert-ecg:{folder}", "HubertModel(output_hidden_states=True), transformers"


def _ecgfounder(folder: Path):
    path = os.environ.get("ECGSOUP_REFERENCE_ECGFOUNDER")
    if not path or not (Path(path) / "net1d.py").is_file():
        raise RuntimeError("set ECGSOUP_REFERENCE_ECGFOUNDER to a checkout of PKUDigitalHealth/ECGFounder")
    import make_golden_ecgfounder as golden

    from ecgsoup.backbones.ecgfounder import ENTRY

    net1d = golden.import_reference(Path(path), "net1d")
    geometry = dict(ENTRY.sizes["12lead"])
    geometry = {k: v for k, v in geometry.items() if k in (
        "in_channels", "base_filters", "ratio", "filter_list", "m_blocks_list", "kernel_size", "stride",
        "groups_width")}
    model = golden.seeded_reference(net1d, {k: list(v) if isinstance(v, tuple) else v for k, v in geometry.items()},
                                    torch.Generator().manual_seed(0))
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "12_lead_ECGFounder.pth"
    torch.save({"state_dict": model.state_dict()}, file)

    def forward(net, x):
        captured = []
        hook = lambda module, inputs, output: captured.append(output.mean(-1))  # noqa: E731
        handles = [net.first_activation.register_forward_hook(hook)]
        handles += [stage.register_forward_hook(hook) for stage in net.stage_list]
        try:
            net(x)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat(captured, dim=1)

    return model, forward, f"ecgfounder:{file}", "authors' Net1D with forward hooks on the stem and stages"


def _merl(folder: Path):
    path = os.environ.get("ECGSOUP_REFERENCE_MERL")
    if not path or not (Path(path) / "finetune" / "models" / "resnet1d.py").is_file():
        raise RuntimeError("set ECGSOUP_REFERENCE_MERL to a checkout of cheliu-computation/MERL-ICML2024")
    import make_golden_merl as golden

    resnet1d = golden.import_file(Path(path) / "finetune" / "models" / "resnet1d.py", "_merl_resnet1d")
    model = golden.perturb(resnet1d.ResNet18(num_classes=10), torch.Generator().manual_seed(0))
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "res18_best_encoder.pth"
    torch.save(model.state_dict(), file)

    def forward(net, x):
        captured = []
        handles = [net.layer1.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].mean(-1)))]
        handles += [getattr(net, f"layer{i}").register_forward_hook(
            lambda module, inputs, output: captured.append(output.mean(-1))) for i in range(1, 5)]
        try:
            net(x)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat(captured, dim=1)

    return model, forward, f"merl:{file}", "authors' ResNet18 with hooks on the stem's output and the stages"


def _ecg_jepa(folder: Path):
    path = os.environ.get("ECGSOUP_REFERENCE_ECG_JEPA")
    if not path or not (Path(path) / "ecg_jepa.py").is_file():
        raise RuntimeError("set ECGSOUP_REFERENCE_ECG_JEPA to a checkout of sehunfromdaegu/ECG_JEPA")
    import make_golden_ecg_jepa as golden
    import torch.nn.functional as F

    from ecgsoup.backbones.ecg_jepa import ENTRY

    ecg_jepa = golden.import_reference(Path(path))
    model = golden.seeded_encoder(ecg_jepa, dict(ENTRY.sizes["base"]), torch.Generator().manual_seed(0))
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "multiblock_epoch100.pth"
    torch.save({"encoder": model.state_dict(), "epoch": 100}, file)

    def forward(net, x):
        captured, norm = [], net.norm
        pool = lambda h: F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps).mean(1)  # noqa: E731
        hook = lambda module, inputs, output: captured.append(pool(output))  # noqa: E731
        handles = [net.W_P.register_forward_hook(hook)]
        handles += [block.register_forward_hook(hook) for block in net.encoder_blocks.blocks]
        try:
            net.representation(x)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat(captured, dim=1)

    return model, forward, f"ecg-jepa:{file}", ("authors' MaskTransformer.representation with forward hooks on "
                                                "the token projection and every block (final norm per token, mean)")


def _ecg_fm(folder: Path):
    """The authors' Wav2Vec2CMSCModel (fairseq-signals checkout), released geometry, seeded."""
    import make_golden_ecg_fm as golden

    root = golden.reference_root()
    if root is None:
        raise RuntimeError(f"set {golden.REFERENCE_ENV} to a checkout of {golden.REFERENCE_REPO}")
    model, cfg = golden.build_reference(root, golden.BASE, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "mimic_iv_ecg_physionet_pretrained.pt"
    torch.save(golden.original_checkpoint(model, cfg), file)

    def forward(net, x):
        captured = []
        encoder = net.encoder
        handles = [encoder.layers[0].register_forward_pre_hook(lambda m, args: captured.append(args[0]))]
        handles += [layer.register_forward_hook(lambda m, args, out: captured.append(out[0]))
                    for layer in encoder.layers]
        try:
            net.extract_features(x, None)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat([h.mean(dim=0) for h in captured], dim=1)  # (T, B, C): mean over frames

    return model, forward, f"ecg-fm:{file}", "fairseq-signals Wav2Vec2CMSCModel.extract_features with layer hooks"


REFERENCES = {"hubert-ecg": _hubert, "ecgfounder": _ecgfounder, "merl": _merl, "ecg-jepa": _ecg_jepa,
              "ecg-fm": _ecg_fm}


# -- inputs -------------------------------------------------------------------------------
def _windows(module, n: int) -> torch.Tensor:
    """``n`` real LUDB windows in the module's contract, normalised as the embedder does."""
    from ecgsoup import ECGPreprocessor
    from ecgsoup.recipes import apply_window_norm, window_transform

    data = np.load(shared_data_path() / "ludb" / "ludb_12lead_500hz.npz")
    contract = module.contract
    x = data["x"][:n].astype(np.float64) / 1000.0
    prep = ECGPreprocessor(sampling_rate=float(data["fs"]), lead_names=list(data["lead_names"]), model=contract)
    flat = prep.fit_transform(x)
    records = flat.reshape(n, contract.n_leads, -1)[:, :, : contract.window]
    batch = apply_window_norm(records, contract.window_norm)
    transform = window_transform(contract.window_transform)
    if transform is not None:
        batch = transform(batch)
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


def _bf16(module):
    return copy.deepcopy(module).to(torch.bfloat16).eval()


def _time(fn, repeats_inner: int = 1) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(repeats_inner):
            fn()
    return (time.perf_counter() - start) / repeats_inner


# -- memory -------------------------------------------------------------------------------
def _memory_child(model: str, n: int) -> None:
    from ecgsoup import ECGPreprocessor, LayerwiseEmbedder

    data = np.load(shared_data_path() / "ludb" / "ludb_12lead_500hz.npz")
    x = np.concatenate([data["x"]] * (1 + n // len(data["x"])))[:n].astype(np.float64) / 1000.0
    prep = ECGPreprocessor(sampling_rate=float(data["fs"]), lead_names=list(data["lead_names"]), model=model)
    embedder = LayerwiseEmbedder(model=model, batch_size=8)
    # Records go through in chunks, as `ecgsoup embed` does: the input never has to fit at once.
    embedder.fit(prep.fit_transform(x[:1]))
    for start in range(0, n, 8):
        embedder.transform(prep.transform(x[start : start + 8]))
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _peak_rss(model: str, n: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-child", model, str(n)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--batch", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--memory-records", type=int, default=8, help="n of the n vs 4n memory check")
    parser.add_argument("--memory-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    import warnings

    from ecgsoup.backbones import load_backbone

    warnings.simplefilter("ignore")
    rows, skipped = [], {}
    with tempfile.TemporaryDirectory(prefix="ecgsoup-bench-") as tmp:
        for family in args.families:
            try:
                reference, ref_forward, spec, ref_name = REFERENCES[family](Path(tmp) / family)
            except RuntimeError as reason:
                skipped[family] = str(reason)
                print(f"{family}: skipped ({reason})")
                continue
            ours = load_backbone(spec)
            x = _windows(ours, args.batch)
            with torch.inference_mode():
                a = ours.pooled_layers(x).reshape(len(x), -1).double()
                b = ref_forward(reference, x).double()
            rel = float((a - b).abs().max() / b.abs().max())
            variants = {
                ("ecgsoup", "float32"): (ours, lambda net, x: net.pooled_layers(x)),
                ("reference", "float32"): (reference, ref_forward),
                ("ecgsoup", "bfloat16"): (_bf16(ours), lambda net, x: net.pooled_layers(x)),
                ("reference", "bfloat16"): (_bf16(reference), ref_forward),
            }
            times = {key: [] for key in variants}
            for _ in range(args.repeats + 1):  # the first round warms up and is dropped
                for key, (net, fn) in variants.items():
                    xin = x.to(torch.bfloat16) if key[1] == "bfloat16" else x
                    times[key].append(_time(lambda fn=fn, net=net, xin=xin: fn(net, xin)))
            medians = {key: statistics.median(v[1:]) for key, v in times.items()}
            n = args.memory_records
            small, large = _peak_rss(spec, n), _peak_rss(spec, 4 * n)
            for precision in ("float32", "bfloat16"):
                ours_s, ref_s = medians[("ecgsoup", precision)], medians[("reference", precision)]
                rows.append({
                    "family": family, "precision": precision, "reference": ref_name,
                    "ecgsoup_records_per_s": args.batch / ours_s, "reference_records_per_s": args.batch / ref_s,
                    "speed_ratio": ref_s / ours_s, "max_rel_diff_fp32": rel,
                    "peak_rss_mb_n": small, "peak_rss_mb_4n": large,
                    "raw_s": {"ecgsoup": times[("ecgsoup", precision)][1:],
                              "reference": times[("reference", precision)][1:]},
                })
                print(f"{family} {precision}: ecgsoup {args.batch / ours_s:.1f} rec/s, reference "
                      f"{args.batch / ref_s:.1f} rec/s, ratio {ref_s / ours_s:.2f}x; fp32 max rel diff {rel:.1e}; "
                      f"peak RSS {small:.0f} MB ({n} records) vs {large:.0f} MB ({4 * n})")
    lines = [
        "# Backbones: ecgsoup's all-layer pass against the original code",
        "",
        f"Batch of {args.batch} real LUDB windows in each family's contract; median of {args.repeats} "
        "interleaved rounds; random weights (speed does not depend on their values). Ratio > 1: ecgsoup faster.",
        "",
        "| family | precision | ecgsoup rec/s | reference rec/s | ratio | max rel. diff (fp32) | peak RSS n / 4n (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['family']} | {r['precision']} | {r['ecgsoup_records_per_s']:.1f} | "
                     f"{r['reference_records_per_s']:.1f} | {r['speed_ratio']:.2f} | {r['max_rel_diff_fp32']:.1e} | "
                     f"{r['peak_rss_mb_n']:.0f} / {r['peak_rss_mb_4n']:.0f} |")
    lines += ["", "References: " + "; ".join(sorted({f"{r['family']}: {r['reference']}" for r in rows}))]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items())]
    write_results("backbones", {"rows": rows, "skipped": skipped, "batch": args.batch, "repeats": args.repeats},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
