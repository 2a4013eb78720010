"""Package a pretraining run as a shipped model: fp16 weights, config, training log, model card.

    .venv/bin/python scripts/export_model.py runs/tiny-st-mem ecgsoup/weights/ecgsoup-100hz-tiny \
        --why "better LUDB linear-probe AUC than the IPA run (benchmarks/results/quality.md)"

Reads ``RUN/best`` (the encoder with the lowest validation loss), ``RUN/log.csv``
and ``RUN/settings.json``, writes ``OUT/model.safetensors`` (float16),
``OUT/config.json``, ``OUT/training_log.csv`` and ``OUT/MODEL_CARD.md``.  Every
number in the card comes from those files.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

from ecgsoup.models import load_model, save_model

CARD = """# Model card: {name} ({objective})

## What it is
A 12-block ST-MEM Vision Transformer encoder, tiny size (width {width}, {heads} heads of
{dim_head}, MLP {mlp_dim}; {params:,} parameters), in the `ecgsoup-100hz` configuration: 12 leads in
the order {leads}, {fs:g} Hz, {n_samples} samples (10 s) per window, patches of {patch} samples
(0.5 s), each window z-scored per lead. Stored as float16 safetensors (`model.safetensors`,
sha256 {sha256}); loaded as float32. `LayerwiseEmbedder()` with no arguments uses it.

## How it was trained
- Objective: **{objective}** masked reconstruction (mask ratio {mask_ratio}, per lead;
  normalised-patch MSE on masked patches; decoder {decoder}).{objective_note}
- Data: the PTB-XL subset in `shared/data/ptbxl_zscored_subset` (PTB-XL 500 Hz, band-passed
  0.5-40 Hz and z-scored by a third party, decimated to 250 Hz; resampled here to 100 Hz):
  {n_train:,} training records (strat_fold 1-8), {n_val} validation records (fold 9) for model
  selection; fold 10 untouched. One random 10 s crop per record per epoch (records are 10 s).
- Optimisation: AdamW (betas {betas}, weight decay {weight_decay}), base LR {base_lr:g} per 256
  samples (peak {peak_lr:.2e} at batch {batch_size}), {warmup} warm-up epochs then half-cosine to 0,
  gradient clipping at {clip}, bf16 autocast on CPU, seed {seed}; {epochs_run} of {epochs} epochs
  ({steps:,} steps) on 2 CPU cores ({threads} torch thread(s)) in about {hours:.1f} h.
- Selected checkpoint: epoch {best_epoch} (lowest validation loss). Final train loss
  {final_train:.4f}; selected validation loss {best_val:.4f} (1.0 = predicting each masked patch's
  mean; the first epoch's validation loss was {first_val:.4f}). Per-epoch losses:
  `training_log.csv`.
- Why this one ships: {why}

Reproduce (same data layout, about {hours:.1f} h on 2 cores):

```bash
{command}
.venv/bin/python scripts/export_model.py {run} ecgsoup/weights/{dirname} --why "..."
```

## What it is good for, and its limits
- It is a **small model pretrained on little data** (1,442 ECGs, against ~100k ECGs and a
  ViT-B for the paper's models) and a short schedule; its features beat a randomly initialised
  copy of itself on LUDB linear probes (see `docs/results/quality.md`) but are far from a
  production foundation model. In that benchmark a 14-feature handcrafted neurokit2
  baseline (heart rate, HRV, P-wave presence, intervals) beats it on every task.
- PTB-XL benchmark of the bundled model and of the ST-MEM comparison backbone:
  `benchmarks/results/ptbxl.md` and `benchmarks/results/ptbxl-st-mem.md` (`benchmarks/ptbxl.py`).
- Training data are PTB-XL (German hospital ECGs, 1989-1996); other populations, devices and
  paediatric ECGs are out of distribution.
- Not a medical device; for research on representations only.
- Licence of the training data: PTB-XL, CC BY 4.0 (Wagner et al., Scientific Data 2020).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--why", required=True, help="one sentence: why this run ships")
    args = parser.parse_args()

    encoder = load_model(args.run / "best")
    settings = json.loads((args.run / "settings.json").read_text())
    with open(args.run / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    meta = dict(encoder.metadata)
    best = min(log, key=lambda row: float(row["val_loss"]))
    cfg = encoder.config
    objective = settings["objective"]
    metadata = {
        "pretrained": True,
        "objective": objective,
        "data": "PTB-XL subset (shared/data/ptbxl_zscored_subset), folds 1-8 train, 9 validation",
        "n_train": meta.get("n_train"),
        "n_val": meta.get("n_val"),
        "epoch": int(best["epoch"]),
        "step": int(best["step"]),
        "train_loss": float(best["train_loss"]),
        "val_loss": float(best["val_loss"]),
        # Paths as seen from a checkout that has the shared data beside it.
        "command": re.sub(r"\S*/shared/data", "../shared/data", meta.get("command") or ""),
        "licence": "weights: same as ecgsoup; training data PTB-XL CC BY 4.0",
    }
    encoder.metadata = {}
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(encoder, args.out, dtype="float16", metadata=metadata)
    shutil.copy(args.run / "log.csv", args.out / "training_log.csv")
    shipped = load_model(args.out)
    decoder = settings.get("decoder") or {}
    card = CARD.format(
        name=cfg.name, objective=objective, width=cfg.width, heads=cfg.heads, dim_head=cfg.dim_head,
        mlp_dim=cfg.mlp_dim, params=sum(p.numel() for p in shipped.parameters() if p.requires_grad),
        leads=", ".join(cfg.lead_names), fs=cfg.sampling_rate, n_samples=cfg.n_samples, patch=cfg.patch_size,
        sha256=shipped.metadata["sha256"], mask_ratio=settings["mask_ratio"],
        decoder=json.dumps(decoder) if decoder else "128 wide, 2 blocks, 4 heads x 32 (the tiny default)",
        objective_note=(" IPA: the decoder sees the token-wise mean over all 12 blocks of the "
                        "LayerNorm-ed outputs." if objective == "ipa" else
                        " ST-MEM: the decoder sees the LayerNorm-ed last block."),
        n_train=metadata["n_train"] or 0, n_val=metadata["n_val"] or 0, betas=tuple(settings["betas"]),
        weight_decay=settings["weight_decay"], base_lr=settings["base_lr"],
        peak_lr=settings["base_lr"] * settings["batch_size"] / 256, batch_size=settings["batch_size"],
        warmup=settings["warmup_epochs"], clip=settings["clip_grad"], seed=settings["seed"],
        epochs_run=len(log), epochs=settings["epochs"], steps=int(log[-1]["step"]),
        threads=settings.get("num_threads") or "default",
        hours=sum(float(r["seconds"]) for r in log) / 3600, best_epoch=best["epoch"],
        final_train=float(log[-1]["train_loss"]), best_val=float(best["val_loss"]),
        first_val=float(log[0]["val_loss"]), why=args.why, command=metadata["command"], run=args.run,
        dirname=args.out.name,
    )  # fmt: skip
    (args.out / "MODEL_CARD.md").write_text(card)
    print(f"wrote {args.out} (sha256 {shipped.metadata['sha256'][:12]}, epoch {best['epoch']}, val {best['val_loss']})")


if __name__ == "__main__":
    main()
