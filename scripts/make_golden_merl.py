"""Regenerate the MERL golden fixtures from the authors' code.

Usage::

    ECGSOUP_REFERENCE_MERL=/path/to/MERL-ICML2024 PYTHONPATH=. python scripts/make_golden_merl.py

``ECGSOUP_REFERENCE_MERL`` names a local checkout of
https://github.com/cheliu-computation/MERL-ICML2024 (MIT); its
``finetune/models/resnet1d.py`` (the encoder the authors' linear probe loads)
and ``finetune/finetune_dataset.py`` (their downstream data-set class) are
imported from there and nothing of it is copied.  The script writes, under
``tests/backbones/golden/``:

* ``merl-tiny.pth``: the flat encoder state dict, in the layout and key names
  of the authors' ``*_encoder.pth`` files (``linear.*`` head and
  ``num_batches_tracked`` counters included), of the reference ResNet at the
  family's tiny geometry.  The reference hard-codes 12 leads and the widths
  64-512, so the tiny model is the reference ``ResNet`` whose stem and stages
  are rebuilt with the reference's own ``_make_layer`` and ``BasicBlock`` at
  the tiny widths; its ``forward`` is the authors'.  Every tensor is drawn
  from a seeded generator, BatchNorm scales, shifts and statistics included,
  so no tensor keeps its initial value;
* ``merl-tiny.npz``: one random input, the reference's per-layer pooled
  outputs (stem: the input of ``layer1``; stages: forward hooks) and its
  ``avgpool`` embedding; plus two PTB-XL records read and scaled by the
  authors' ``ECGDataset`` (WFDB files from the shared data folder, leads
  swapped to MIMIC order there) with the reference's per-layer outputs on
  them; and the reference commit.

``ECGSOUP_SHARED_DATA`` (default ``../shared/data``) names the folder holding
``ptbxl_sample/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "backbones" / "golden"
SEED = 20260523
N_CLASSES = 5
INPUT_SHAPE = (2, 12, 1001)  # odd length: exercises the strided convolutions' edges
PTBXL_RECORDS = (0, 7)  # positions in ptbxl_sample/labels.csv


def reference_dir() -> Path:
    path = os.environ.get("ECGSOUP_REFERENCE_MERL")
    if not path or not (Path(path) / "finetune" / "models" / "resnet1d.py").is_file():
        sys.exit("Set ECGSOUP_REFERENCE_MERL to a checkout of cheliu-computation/MERL-ICML2024.")
    return Path(path)


def shared_data() -> Path:
    path = Path(os.environ.get("ECGSOUP_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "ptbxl_sample" / "labels.csv").is_file():
        sys.exit(f"No ptbxl_sample/ under {path}; set ECGSOUP_SHARED_DATA.")
    return path


def import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("ECGSOUP_REFERENCE_MERL_COMMIT", "unknown")


def tiny_reference(resnet1d, geometry: dict, n_classes: int = N_CLASSES):
    """The authors' ResNet with its stem and stages rebuilt at ``geometry``'s widths."""
    block = resnet1d.BasicBlock
    model = resnet1d.ResNet(block, list(geometry["blocks"]), num_classes=n_classes)
    stem = geometry["stem_width"]
    model.conv1 = nn.Conv1d(geometry["in_channels"], stem, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm1d(stem)
    model.in_channels = stem
    for index, (width, blocks) in enumerate(zip(geometry["widths"], geometry["blocks"])):
        setattr(model, f"layer{index + 1}", model._make_layer(block, width, blocks, stride=1 if index == 0 else 2))
    model.linear = nn.Linear(geometry["widths"][-1], n_classes)
    return model


def perturb(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Every parameter and buffer drawn from ``generator``, far from its initial value."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
            elif tensor.ndim == 1:
                # BN scales, shifts, running means and the head's bias: a port that
                # skips one, or uses batch statistics, cannot pass.
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator) + 0.1)
            else:
                bound = 1.0 / np.sqrt(tensor[0].numel())
                tensor.uniform_(-bound, bound, generator=generator)
    return model.eval()


def reference_layers(model, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """Pooled stem (input of layer1) and stage outputs, and the ``avgpool`` embedding."""
    captured, embedding = [], []
    handles = [model.layer1.register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0].mean(-1)))]
    for index in range(1, 5):
        layer = getattr(model, f"layer{index}")
        handles.append(layer.register_forward_hook(lambda m, i, output: captured.append(output.mean(-1))))
    handles.append(model.avgpool.register_forward_hook(lambda m, i, output: embedding.append(output.flatten(1))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [c.numpy() for c in captured], embedding[0].numpy()


def authors_ptbxl_items(ref: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """PTB-XL records as the authors' ``ECGDataset`` hands them to the model: ``(n, 12, 5000)``."""
    import pandas as pd

    dataset_module = import_file(ref / "finetune" / "finetune_dataset.py", "_merl_finetune_dataset")
    labels = pd.read_csv(data / "ptbxl_sample" / "labels.csv").iloc[list(PTBXL_RECORDS)].reset_index(drop=True)
    # The class reads `filename_hr` and takes every column after the sixth as a label.
    table = pd.DataFrame({
        "ecg_id": labels["ecg_id"], "age": labels["age"], "sex": labels["sex"],
        "strat_fold": labels["strat_fold"], "filename_lr": labels["filename_lr"],
        "filename_hr": labels["filename_hr"],
        "NORM": labels["challenge2024_labels"].str.contains("NORM").astype(float),
    })
    dataset = dataset_module.ECGDataset(str(data / "ptbxl_sample"), table, mode="test", dataset_name="ptbxl")
    items = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    return items, labels["ecg_id"].to_numpy(np.int32)


def main() -> None:
    ref = reference_dir()
    data = shared_data()
    resnet1d = import_file(ref / "finetune" / "models" / "resnet1d.py", "_merl_resnet1d")
    from ecgsoup.backbones.merl import ENTRY

    geometry = dict(ENTRY.tiny)
    generator = torch.Generator().manual_seed(SEED)
    model = perturb(tiny_reference(resnet1d, geometry), generator)
    x = torch.randn(INPUT_SHAPE, generator=generator)
    pooled, embedding = reference_layers(model, x)
    items, ecg_ids = authors_ptbxl_items(ref, data)
    ptbxl_pooled, ptbxl_embedding = reference_layers(model, torch.from_numpy(items))

    GOLDEN.mkdir(parents=True, exist_ok=True)
    ckpt = GOLDEN / "merl-tiny.pth"
    torch.save(model.state_dict(), ckpt)
    np.savez_compressed(
        GOLDEN / "merl-tiny.npz",
        input=x.numpy(),
        **{f"pooled_{i}": p for i, p in enumerate(pooled)},
        embedding=embedding,
        ptbxl_ecg_id=ecg_ids,
        **{f"ptbxl_pooled_{i}": p for i, p in enumerate(ptbxl_pooled)},
        ptbxl_embedding=ptbxl_embedding,
        reference_repo=np.array("https://github.com/cheliu-computation/MERL-ICML2024"),
        reference_commit=np.array(reference_commit(ref)),
        geometry=np.array(json.dumps(geometry, sort_keys=True)),
        checkpoint_sha256=np.array(hashlib.sha256(ckpt.read_bytes()).hexdigest()),
        torch_version=np.array(torch.__version__),
        seed=np.int64(SEED),
    )
    for path in (ckpt, GOLDEN / "merl-tiny.npz"):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
