"""Regenerate the ECGFounder golden fixtures from the authors' code.

Usage::

    ECGSOUP_REFERENCE_ECGFOUNDER=/path/to/ECGFounder python scripts/make_golden_ecgfounder.py

``ECGSOUP_REFERENCE_ECGFOUNDER`` names a local checkout of
https://github.com/PKUDigitalHealth/ECGFounder (MIT); its ``net1d.py`` and
``util.py`` are imported from there and nothing of it is copied.  The script
writes, under ``tests/backbones/golden/``:

* ``ecgfounder-tiny.pth``: ``{"state_dict": ...}`` of the reference Net1D at
  the family's tiny geometry, in the original key names, with seeded random
  weights (every bias drawn off its default, the never-run BatchNorm tensors
  and the ``dense`` head included and set to non-trivial values);
* ``ecgfounder-tiny.npz``: one input, the reference's per-layer pooled
  outputs (stem and every stage, taken with forward hooks), its
  ``return_features=True`` embedding, one synthetic record with the authors'
  fine-tuning filter applied, and the reference commit.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "backbones" / "golden"
SEED = 20260522
N_CLASSES = 5
INPUT_SHAPE = (2, 12, 997)  # odd length: exercises the right-hand SAME padding and max-pool edges
RECIPE_SHAPE = (3, 3000)  # leads x samples at 500 Hz
RECIPE_FS = 500


def reference_dir() -> Path:
    path = os.environ.get("ECGSOUP_REFERENCE_ECGFOUNDER")
    if not path or not (Path(path) / "net1d.py").is_file():
        sys.exit("Set ECGSOUP_REFERENCE_ECGFOUNDER to a checkout of PKUDigitalHealth/ECGFounder.")
    return Path(path)


def import_reference(path: Path, name: str):
    """Import ``name`` from the checkout; ``util`` needs h5py only for functions not used here."""
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    if name == "util" and importlib.util.find_spec("h5py") is None:
        sys.modules.setdefault("h5py", types.ModuleType("h5py"))
    return importlib.import_module(name)


def reference_commit(path: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("ECGSOUP_REFERENCE_ECGFOUNDER_COMMIT", "unknown")


def seeded_reference(net1d, geometry: dict, generator: torch.Generator):
    """The reference Net1D with every tensor drawn from ``generator``."""
    model = net1d.Net1D(
        n_classes=N_CLASSES,
        use_bn=False,
        use_do=False,
        return_features=True,
        verbose=False,
        **geometry,
    )
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
            elif tensor.ndim == 1:
                # Biases, BN weights/shifts and running means: far from 0 and 1, so
                # a port that skips a bias or runs a BatchNorm cannot pass.
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator) + 0.1)
            else:
                bound = 1.0 / np.sqrt(tensor[0].numel())
                tensor.uniform_(-bound, bound, generator=generator)
    return model.eval()


def reference_layers(model, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """Pooled stem and stage outputs (forward hooks) and the ``return_features`` embedding."""
    captured = []
    hook = lambda module, inputs, output: captured.append(output.mean(-1))
    handles = [model.first_activation.register_forward_hook(hook)]
    handles += [stage.register_forward_hook(hook) for stage in model.stage_list]
    try:
        with torch.no_grad():
            _, features = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [c.numpy() for c in captured], features.numpy()


def synthetic_record(rng: np.random.Generator) -> np.ndarray:
    """A record with ECG-like content, 50 Hz hum, baseline wander and noise, ``(leads, samples)``."""
    t = np.arange(RECIPE_SHAPE[1]) / RECIPE_FS
    leads = []
    for _ in range(RECIPE_SHAPE[0]):
        beats = sum(np.exp(-((t - c) ** 2) / (2 * 0.012**2)) for c in np.arange(0.3, t[-1], 0.8))
        wander = 0.4 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6))
        hum = 0.05 * np.sin(2 * np.pi * 50 * t)
        leads.append(
            rng.uniform(0.5, 1.5) * beats + wander + hum + 0.02 * rng.standard_normal(t.size)
        )
    return np.stack(leads)


def main() -> None:
    ref = reference_dir()
    net1d = import_reference(ref, "net1d")
    util = import_reference(ref, "util")
    from ecgsoup.backbones.ecgfounder import ENTRY

    geometry = dict(ENTRY.tiny)
    generator = torch.Generator().manual_seed(SEED)
    model = seeded_reference(net1d, geometry, generator)
    x = torch.randn(INPUT_SHAPE, generator=generator)
    pooled, features = reference_layers(model, x)

    rng = np.random.default_rng(SEED)
    record = synthetic_record(rng)
    filtered = util.filter_bandpass(record, RECIPE_FS)

    GOLDEN.mkdir(parents=True, exist_ok=True)
    ckpt = GOLDEN / "ecgfounder-tiny.pth"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    np.savez_compressed(
        GOLDEN / "ecgfounder-tiny.npz",
        input=x.numpy(),
        **{f"pooled_{i}": p for i, p in enumerate(pooled)},
        features=features,
        recipe_input=record,
        recipe_output=filtered,
        recipe_fs=np.float64(RECIPE_FS),
        reference_commit=np.array(reference_commit(ref)),
        geometry=np.array(json.dumps(geometry, sort_keys=True)),
        checkpoint_sha256=np.array(hashlib.sha256(ckpt.read_bytes()).hexdigest()),
        torch_version=np.array(torch.__version__),
        seed=np.int64(SEED),
    )
    for path in (ckpt, GOLDEN / "ecgfounder-tiny.npz"):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
