"""Package a pretraining run as a shipped model: fp16 weights, config, training log, model card.

    .venv/bin/python scripts/export_model.py runs/tiny-st-mem ecgsoup/weights/ecgsoup-100hz-tiny \
        --why "better LUDB linear-probe AUC than the IPA run (benchmarks/results/quality.md)"

Reads ``RUN/best`` (the encoder with the lowest validation loss; ``--encoder
epoch-NNN`` takes a kept snapshot instead, e.g. the one the fold-9 PTB-XL probe
selected), ``RUN/log.csv`` up to that encoder's epoch, and ``RUN/settings.json``, writes ``OUT/model.safetensors`` (float16),
``OUT/config.json``, ``OUT/training_log.csv`` and ``OUT/MODEL_CARD.md``.  Every
number in the card comes from those files.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

from ecgsoup.backbones.stmem import load_model, save_model

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
  gradient clipping at {clip}, {precision}, seed {seed}; {epochs_run} of {epochs} epochs
  ({steps:,} steps) on 2 CPU cores ({threads} torch thread(s)) in about {hours:.1f} h.
- Selected checkpoint: epoch {best_epoch} ({selection}). Train loss
  {final_train:.4f}; selected validation loss {best_val:.4f} (1.0 = predicting each masked patch's
  mean; the first epoch's validation loss was {first_val:.4f}). Per-epoch losses:
  `training_log.csv`.
- Why this one ships: {why}.

Reproduce (same data layout, about {hours:.1f} h on 2 cores):

```bash
{command}
.venv/bin/python scripts/export_model.py {run} ecgsoup/weights/{dirname}{export_options} --why "..."
```

{measured}{notes}
## What it is good for, and its limits
- It is a **small model pretrained on little data** (1,442 ECGs, against ~100k ECGs and a
  ViT-B for the paper's models). Its measured linear-probe scores, against its randomly
  initialised twin and 14 clinical features (neurokit2), are in the results pages: PTB-XL
  (`benchmarks/results/ptbxl.md`, fold 9 held out) and LUDB, the out-of-distribution check
  (`benchmarks/results/quality.md`); the pretraining scaling curve is
  `benchmarks/results/pretraining/scaling.md`.
- Training data are PTB-XL (German hospital ECGs, 1989-1996); other populations, devices and
  paediatric ECGs are out of distribution. Its PTB-XL scores on folds 1-9 are not an
  independent test: it was pretrained (without labels) on folds 1-8 and selected on fold 9.
- Not a medical device; for research on representations only.
- Licence of the training data: PTB-XL, CC BY 4.0 (Wagner et al., Scientific Data 2020).
"""


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _measured(sha256: str) -> str:
    """The card's "Measured" section, from the committed benchmark results (numbers never typed)."""
    lines = ["## Measured", ""]
    scaling = RESULTS / "pretraining" / "scaling.json"
    if scaling.exists():
        rows = json.loads(scaling.read_text())["rows"]
        lines += [
            "Pretraining scaling curve: the fold-9 PTB-XL probe (logistic regression; layer and C "
            "chosen inside folds 1-8; macro ROC AUC, ECG-Soup rule, bootstrap 95 % interval) and the "
            "validation loss of each saved encoder (`benchmarks/scaling.py`, "
            "`benchmarks/results/pretraining/scaling.md`):", "",
            "| encoder | objective | epoch (of schedule) | val loss | super-classes | all statements |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            epoch = f"{r['epoch']} (of {r['schedule_epochs']})" if r.get("schedule_epochs") else str(r["epoch"])
            lines.append(
                f"| `{r['model']}` | {r['objective']} | {epoch} | {r['val_loss']:.4f} | "
                f"{r['super_best']:.3f} [{r['super_best_ci'][0]:.3f}, {r['super_best_ci'][1]:.3f}] | "
                f"{r['all_best']:.3f} [{r['all_best_ci'][0]:.3f}, {r['all_best_ci'][1]:.3f}] |")
        lines.append("")
    ptbxl = RESULTS / "ptbxl.json"
    data = json.loads(ptbxl.read_text()) if ptbxl.exists() else {}
    if data.get("model_sha256") == sha256:  # results of another model are left out
        wanted = ["best layer (chosen on validation)", "PPA", "random weights (layer chosen on validation)",
                  "clinical features", "clinical features + best layer"]
        table = {(r["task"], r["representation"]): r for r in data["table"] if r["probe"] == "logistic"}
        tasks = list(dict.fromkeys(r["task"] for r in data["table"]))
        lines += [
            f"PTB-XL benchmark of this model (`benchmarks/ptbxl.py`; {data['label']}): macro ROC AUC on "
            "fold 9, logistic probe, choices made inside folds 1-8; the published ST-MEM ViT-B linear "
            "probe on the full PTB-XL (fold 10, a different test set; 13 times the labelled records, "
            "and a ViT-B pretrained on far more ECGs) for scale:", "",
            "| task | " + " | ".join(wanted) + " | published ST-MEM ViT-B |",
            "|---|" + "---|" * (len(wanted) + 1),
        ]
        for task in tasks:
            cells = [f"{table[(task, w)]['auc']:.3f}" if (task, w) in table else "n/a" for w in wanted]
            lines.append(f"| {task} | " + " | ".join(cells) + f" | {data['published_reference'].get(task, 'n/a')} |")
        lines.append("")
    quality = RESULTS / "quality.json"
    if quality.exists():
        data = json.loads(quality.read_text())
        if data.get("model_sha256") == sha256:
            tasks = list(dict.fromkeys(r["task"] for r in data["table"]))
            lines += ["LUDB, the out-of-distribution check (`benchmarks/quality.py`; 5-fold CV x 3, "
                      "macro ROC AUC, mean ± std):", "",
                      "| features | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
            for name in dict.fromkeys(r["features"] for r in data["table"]):
                cells = [next((f"{r['mean']:.3f} ± {r['std']:.3f}" for r in data["table"]
                               if r["task"] == t and r["features"] == name), "n/a") for t in tasks]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _reproduce_command(command: str, epoch: int, step: int, settings: dict) -> str:
    """The run's command as one uninterrupted run that stops at the shipped snapshot.

    Paths as seen from a checkout with the shared data beside it; no ``--resume`` (the run was
    resumed across sessions; each resume continues the same schedule) and no ``--precision``
    (the default takes bf16 where the CPU has it); ``--max-steps`` and ``--keep-epochs`` so that
    it stops at, and keeps, the snapshot that ships.
    """
    command = re.sub(r"\S*/shared/data", "../shared/data", command)
    command = re.sub(r" --resume\b", "", command)
    command = re.sub(r" --precision \S+", "", command)
    if epoch < settings["epochs"]:
        command = re.sub(r" --keep-epochs( \d+)+", "", command) + f" --keep-epochs {epoch} --max-steps {step}"
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--why", required=True, help="one sentence: why this run ships")
    parser.add_argument("--encoder", default="best",
                        help="which saved encoder of RUN ships: best (lowest validation loss) or epoch-NNN")
    parser.add_argument("--selection", default="lowest validation loss",
                        help="how the encoder was chosen, for the card")
    parser.add_argument("--notes", default="", help="a paragraph for the card's 'Training length' section")
    args = parser.parse_args()

    encoder = load_model(args.run / args.encoder)
    settings = json.loads((args.run / "settings.json").read_text())
    with open(args.run / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    meta = dict(encoder.metadata)
    if args.encoder != "best":
        # The card describes training up to this snapshot, not the run's later epochs.
        log = [row for row in log if int(row["epoch"]) <= int(meta["epoch"])]
        best = log[-1]
    else:
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
        "command": _reproduce_command(meta.get("command") or "", int(best["epoch"]), int(best["step"]), settings),
        "licence": "weights: same as ecgsoup; training data PTB-XL CC BY 4.0",
    }
    encoder.metadata = {}
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(encoder, args.out, dtype="float16", metadata=metadata)
    with open(args.out / "training_log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
    shipped = load_model(args.out)
    history = meta.get("precision_history") or [[0, meta.get("settings", {}).get("precision", "bfloat16")]]
    words = {"bfloat16": "bf16 autocast", "float32": "float32"}
    precision = " then ".join(
        f"{words.get(p, p)} from step {step:,}" if i else words.get(p, p) for i, (step, p) in enumerate(history)
    ) + (" (resumed on a CPU without bf16 instructions)" if len(history) > 1 else "") + " on CPU"
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
        warmup=settings["warmup_epochs"], clip=settings["clip_grad"], seed=settings["seed"], precision=precision,
        notes=f"## Training length\n{args.notes}\n" if args.notes else "",
        epochs_run=len(log), epochs=settings["epochs"], steps=int(log[-1]["step"]),
        threads=settings.get("num_threads") or "default",
        hours=sum(float(r["seconds"]) for r in log) / 3600, best_epoch=best["epoch"],
        final_train=float(log[-1]["train_loss"]), best_val=float(best["val_loss"]),
        first_val=float(log[0]["val_loss"]), why=args.why, command=metadata["command"], run=args.run,
        dirname=args.out.name, selection=args.selection, measured=_measured(shipped.metadata["sha256"]),
        export_options="" if args.encoder == "best" else f' --encoder {args.encoder} --selection "{args.selection}"',
    )  # fmt: skip
    (args.out / "MODEL_CARD.md").write_text(card)
    print(f"wrote {args.out} (sha256 {shipped.metadata['sha256'][:12]}, epoch {best['epoch']}, val {best['val_loss']})")


if __name__ == "__main__":
    main()
