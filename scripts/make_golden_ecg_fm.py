"""Regenerate the ECG-FM golden fixtures from the authors' fairseq-signals code.

    ECGSOUP_REFERENCE_ECG_FM=/path/to/fairseq-signals \\
        .venv/bin/python scripts/make_golden_ecg_fm.py  [--out tests/backbones/golden]

The reference is a checkout of Jwoo5/fairseq-signals (the commit is recorded
in the fixture).  Its package ``__init__`` registers every task, criterion and
Hydra config of the framework (Hydra 1.0 and OmegaConf 2.0, which do not
import on Python 3.11), so :func:`reference_classes` imports only what the
encoder's forward pass runs: the real ``fairseq_signals.modules`` and the real
``models/{transformer,ecg_transformer}.py`` and ``models/wav2vec2/*.py``, with
the registry, task and training-config modules they name at import time
replaced by small stand-ins (a no-op ``register_model``, plain config
dataclasses, and an ``omegaconf.II`` placeholder when OmegaConf is absent).
No computation of the encoder is replaced.

Writes, under ``OUT``:

* ``ecg-fm-tiny.pt``: a tiny-geometry ``Wav2Vec2CMSCModel`` (the class of the
  released pretrained model) with seeded random weights, every parameter and
  buffer moved off its initial value, saved in the published layout
  (``{'model': state_dict, 'cfg': {'model': ..., 'task': ...}}``, plain dicts,
  the positional convolution in the legacy ``weight_g``/``weight_v``
  spelling, with the quantizer, ``project_q``, ``final_proj`` and
  ``mask_emb`` pretraining heads);
* ``ecg-fm-tiny.npz``: one seeded input ``(records, 12, 2500)``, the
  reference's per-layer hidden states (the input of the first transformer
  layer and every layer's output, captured with hooks) mean-pooled over
  frames, the authors' embedding of the encoder output
  (``sum / count of non-zero`` over frames, ``scripts/embs.py``), the same
  for the same tensors read as a pre-LN encoder (``layer_norm_first=True``),
  the authors' preprocessing of one real PTB-XL record, and the reference
  repository and commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

REFERENCE_ENV = "ECGSOUP_REFERENCE_ECG_FM"
REFERENCE_REPO = "https://github.com/Jwoo5/fairseq-signals"
SEED = 20240805
N_RECORDS = 2
N_LEADS, N_SAMPLES = 12, 2500  # 5 s at 500 Hz, the published input

# A tiny geometry that keeps every feature of the published one: four
# bias-free convolutions of kernel 2 and stride 2 (2,500 samples -> 156
# frames), a projection (conv width != model width), an even positional
# kernel (so the dropped last frame matters), grouped, post-LN.
TINY = {
    "conv_feature_layers": "[(16, 2, 2)] * 4",
    "in_d": 12,
    "conv_bias": False,
    "extractor_mode": "default",
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "layer_norm_first": False,
}

# The released model's cfg['model'] geometry.
BASE = dict(TINY, conv_feature_layers="[(256, 2, 2)] * 4", encoder_layers=12, encoder_embed_dim=768,
            encoder_ffn_embed_dim=3072, encoder_attention_heads=12, conv_pos=128, conv_pos_groups=16)

# Pretraining settings that build the heads the released checkpoint carries.
HEADS = {
    "_name": "wav2vec2_cmsc",
    "quantize_targets": True,
    "latent_vars": 8,
    "latent_groups": 2,
    "latent_dim": 0,
    "final_dim": 16,
    "apply_mask": True,
    "mask_prob": 0.65,
}


def reference_root() -> Path | None:
    path = os.environ.get(REFERENCE_ENV)
    if not path:
        return None
    root = Path(path)
    return root if (root / "fairseq_signals" / "modules" / "transformer_encoder.py").is_file() else None


def reference_commit(root: Path) -> str:
    """The checkout's commit: ``git rev-parse HEAD``, or a ``COMMIT`` file beside an exported tree."""
    if (root / "COMMIT").is_file():
        return (root / "COMMIT").read_text().strip()
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _stub(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    if path is not None:
        module.__path__ = [str(path)]
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def reference_classes(root: Path) -> types.SimpleNamespace:
    """The authors' ``Wav2Vec2CMSCConfig``/``Wav2Vec2CMSCModel`` and modules, imported from ``root``.

    Only the registry, task and training-config modules are stand-ins (see
    the module docstring); every module the forward pass runs is the original.
    """
    if "fairseq_signals.models.wav2vec2.wav2vec2_cmsc" in sys.modules:
        return sys.modules["fairseq_signals"]._ecgsoup_reference
    package = root / "fairseq_signals"
    from torch import nn

    if importlib.util.find_spec("omegaconf") is None:
        _stub("omegaconf", II=lambda interpolation: None)
    _stub("fairseq_signals", package)
    _stub("fairseq_signals.distributed", package / "distributed")
    sys.modules["fairseq_signals.distributed"].utils = _stub("fairseq_signals.distributed.utils")
    constants = importlib.util.spec_from_file_location(
        "fairseq_signals.dataclass.constants", package / "dataclass" / "constants.py")
    constants_module = importlib.util.module_from_spec(constants)
    constants.loader.exec_module(constants_module)
    sys.modules["fairseq_signals.dataclass.constants"] = constants_module
    _stub("fairseq_signals.dataclass", package / "dataclass", ChoiceEnum=constants_module.ChoiceEnum,
          Dataclass=object)
    _stub("fairseq_signals.tasks", Task=object)

    def unused(*args, **kwargs):
        raise NotImplementedError("training-only helper, not part of the encoder's forward pass")

    _stub("fairseq_signals.utils", package / "utils")
    sys.modules["fairseq_signals.utils"].utils = _stub(
        "fairseq_signals.utils.utils", buffered_arange=unused, log_softmax=unused, softmax=unused)
    _stub("fairseq_signals.data", package / "data")
    sys.modules["fairseq_signals.data"].data_utils = _stub(
        "fairseq_signals.data.data_utils", compute_mask_indices=unused)
    _stub("fairseq_signals.models", package / "models", register_model=lambda *a, **k: (lambda cls: cls),
          BaseModel=nn.Module)

    @dataclasses.dataclass
    class PretrainingConfig:
        all_gather: bool = False

    class PretrainingModel(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg

    _stub("fairseq_signals.models.pretraining_model", PretrainingConfig=PretrainingConfig,
          PretrainingModel=PretrainingModel)

    @dataclasses.dataclass
    class FinetuningConfig:
        model_path: str | None = None

    _stub("fairseq_signals.models.finetuning_model", FinetuningConfig=FinetuningConfig,
          FinetuningModel=nn.Module)
    modules = importlib.import_module("fairseq_signals.modules")
    cmsc = importlib.import_module("fairseq_signals.models.wav2vec2.wav2vec2_cmsc")
    found = types.SimpleNamespace(config=cmsc.Wav2Vec2CMSCConfig, model=cmsc.Wav2Vec2CMSCModel, modules=modules)
    sys.modules["fairseq_signals"]._ecgsoup_reference = found
    return found


def build_reference(root: Path, geometry: dict, seed: int):
    """The authors' pretrained-model class with seeded weights, every tensor moved off its init.

    Every parameter and floating buffer gets seeded noise: matrices and
    kernels normal with standard deviation ``1 / sqrt(fan_in)``, biases
    normal(0, 0.1), normalisation scales 1 + normal(0, 0.1), the weight-norm
    magnitude uniform in [0.5, 1.5].  Returns ``(model, cfg_dict)``, the model
    in eval mode.
    """
    ref = reference_classes(root)
    fields = {f.name for f in dataclasses.fields(ref.config)}
    cfg_dict = {**HEADS, **geometry}
    cfg = ref.config(**{k: v for k, v in cfg_dict.items() if k in fields})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ref.model(cfg).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            noise = torch.empty(tensor.shape).normal_(generator=generator)
            if name.endswith(("original0", "weight_g")):
                tensor.copy_(torch.empty(tensor.shape).uniform_(0.5, 1.5, generator=generator))
            elif tensor.ndim == 1 and name.endswith("weight"):
                tensor.copy_(1 + 0.1 * noise)
            elif tensor.ndim <= 1 or name.endswith("bias"):
                tensor.copy_(0.1 * noise)
            else:
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
    return model, cfg_dict


def original_checkpoint(model, cfg_dict: dict, spelling: str = "legacy") -> dict:
    """The published layout: ``{'model': state_dict, 'cfg': {...}}`` with plain-dict cfg.

    ``spelling="legacy"`` writes the positional convolution as
    ``weight_g``/``weight_v`` (the released file), ``"parametrizations"`` as
    this fairseq-signals version builds it.
    """
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    prefix = "conv_pos.pos_conv.0."
    if spelling == "legacy":
        for new, old in (("parametrizations.weight.original0", "weight_g"),
                         ("parametrizations.weight.original1", "weight_v")):
            if prefix + new in state:
                state[prefix + old] = state.pop(prefix + new)
    return {
        "model": state,
        "cfg": {"model": dict(cfg_dict), "task": {"_name": "ecg_pretraining", "normalize": False,
                                                   "sample_rate": 500, "enable_padding": True}},
        "optimizer_history": [{"criterion_name": "Wav2Vec2Criterion", "num_updates": 0}],
        "extra_state": {"epoch": 1},
    }


def reference_outputs(model, x: np.ndarray) -> dict:
    """Per-layer mean-pooled hidden states ``(layers, records, width)`` and the authors' embedding."""
    captured = []
    encoder = model.encoder
    hooks = [encoder.layers[0].register_forward_pre_hook(lambda m, args: captured.append(args[0]))]
    hooks += [layer.register_forward_hook(lambda m, args, out: captured.append(out[0]))
              for layer in encoder.layers]
    try:
        with torch.no_grad():
            out = model.extract_features(torch.from_numpy(x), None)
    finally:
        for hook in hooks:
            hook.remove()
    states = [h.transpose(0, 1).double() for h in captured]  # (T, B, C) -> (B, T, C)
    encoder_out = out["x"].double()
    if model.cfg.layer_norm_first:
        states[-1] = encoder_out  # the encoder's final LayerNorm follows the last layer
    assert torch.equal(states[-1], encoder_out)
    # The authors' embedding (ECG-FM scripts/embs.py, from the classifier's pooling).
    embedding = torch.div(encoder_out.sum(dim=1), (encoder_out != 0).sum(dim=1))
    return {"pooled": np.stack([h.mean(dim=1).numpy() for h in states]), "embedding": embedding.numpy()}


def make_input(seed: int, n_records: int = N_RECORDS) -> np.ndarray:
    """An ECG-scaled input: a seeded random walk per lead, z-scored per lead as the authors do.

    The values are rounded to float16 so that the fixture stores them exactly in half the space.
    """
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=(n_records, N_LEADS, N_SAMPLES)), axis=-1)
    walk -= walk.mean(-1, keepdims=True)
    return (walk / walk.std(-1, keepdims=True)).astype(np.float16).astype(np.float32)


RECIPE_RECORD = 0
RECIPE_SAMPLES = 200


def recipe_reference(root: Path, shared: Path) -> dict:
    """The authors' resampling and standardisation (``scripts/preprocess/ecg/preprocess.py``) of one record."""
    reference_classes(root)  # the stand-in parent packages, so its fairseq_signals.utils imports resolve
    path = root / "scripts" / "preprocess" / "ecg" / "preprocess.py"
    spec = importlib.util.spec_from_file_location("_ecgsoup_reference_ecg_fm_preprocess", path)
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    data = np.load(shared / "ptbxl_sample" / "ptbxl_sample_100hz.npz")
    # The first 2 s, (12, time) in mV at 100 Hz.
    record = data["x"][RECIPE_RECORD, :RECIPE_SAMPLES].T.astype(np.float64) / 1000.0
    record[7] = 0.25  # a constant lead, which the authors set to zero
    feats = preprocess.resample(record, 100, 500)
    feats = feats - feats.mean(axis=1, keepdims=True)  # as its preprocess_mat does before dividing
    feats, _ = preprocess.lead_std_divide(feats, constant_lead_strategy="zero")
    return {"recipe_input": record.astype(np.float32), "recipe_fs": np.array(100.0),
            "recipe_output": feats.astype(np.float32), "recipe_ecg_id": data["ecg_id"][RECIPE_RECORD]}


def _shared_data() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("ECGSOUP_SHARED_DATA", default))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "tests" / "backbones" / "golden"
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args(argv)
    root = reference_root()
    if root is None:
        raise SystemExit(f"Set {REFERENCE_ENV} to a checkout of {REFERENCE_REPO}.")
    model, cfg_dict = build_reference(root, TINY, SEED)
    checkpoint = original_checkpoint(model, cfg_dict, spelling="legacy")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ecg-fm-tiny.pt"
    torch.save(checkpoint, path)
    x = make_input(SEED)
    outputs = reference_outputs(model, x)
    # The same tensors read as a pre-LN encoder (cfg layer_norm_first=True), the other branch.
    pre_ln, _ = build_reference(root, {**TINY, "layer_norm_first": True}, SEED)
    pre_ln.load_state_dict(model.state_dict())
    pre_ln_outputs = reference_outputs(pre_ln.eval(), x)
    np.savez_compressed(
        args.out / "ecg-fm-tiny.npz",
        input=x.astype(np.float16),  # exact: make_input rounds to float16
        pooled=outputs["pooled"].astype(np.float32),
        embedding=outputs["embedding"].astype(np.float32),
        pooled_pre_ln=pre_ln_outputs["pooled"].astype(np.float32),
        embedding_pre_ln=pre_ln_outputs["embedding"].astype(np.float32),
        geometry=np.array(json.dumps(TINY)),
        reference_repo=np.array(REFERENCE_REPO),
        reference_commit=np.array(reference_commit(root)),
        torch_version=np.array(torch.__version__),
        seed=np.array(SEED),
        reference=np.array(
            "fairseq_signals Wav2Vec2CMSCModel.extract_features (eval mode); hidden states captured with "
            "hooks (input of encoder.layers[0], output of every layer), mean-pooled over frames; "
            "embedding = sum / count of non-zero over frames of the encoder output"
        ),
        **recipe_reference(root, _shared_data()),
    )
    sizes = {p.name: p.stat().st_size for p in args.out.glob("ecg-fm-tiny.*")}
    print(f"wrote {sizes}; reference commit {reference_commit(root)}, seed {SEED}")


if __name__ == "__main__":
    main()
