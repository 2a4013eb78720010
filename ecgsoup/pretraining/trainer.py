"""The pretraining loop: AdamW, warm-up + cosine, clipping, bf16, checkpoints, resume.

:func:`pretrain` trains a :class:`~ecgsoup.pretraining.mae.MaskedAutoencoder`
on arrays already in the model's lead order and sampling rate, and writes into
``out_dir``:

* ``checkpoint.pt`` -- the latest full state (model, optimiser, step), written
  every ``checkpoint_every`` steps and at the end of each epoch (atomically,
  so a killed run never leaves a half-written file); ``resume=True`` continues
  from it, mid-epoch included, with the same batches and masks as an
  uninterrupted run.
* ``best/`` -- the encoder with the lowest validation reconstruction loss, in
  ecgsoup's safetensors + JSON format (what ``LayerwiseEmbedder`` loads).
* ``log.csv`` -- one row per epoch: step, learning rate, train and validation
  loss, seconds.
* ``settings.json`` -- everything needed to reproduce the run.

Determinism: every random choice (initial weights, record order, crop offsets,
masks) comes from generators seeded by ``seed`` and the epoch or step number,
never from the global RNG.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgsoup.backbones.stmem.config import EncoderConfig, get_config
from ecgsoup.backbones.stmem.weights import new_encoder, save_model
from ecgsoup.hardware import resolve_precision, warn_if_bf16_emulated
from ecgsoup.pretraining.mae import OBJECTIVES, MaskedAutoencoder, default_decoder_settings
from ecgsoup.signal import check_finite, zscore

__all__ = [
    "PretrainSettings",
    "pretrain",
    "lr_at_step",
    "load_checkpoint",
    "load_checkpoint_encoder",
    "compact_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.csv"
LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "val_loss", "best_val_loss", "seconds")


@dataclass
class PretrainSettings:
    """Settings of one pretraining run (ECG-Soup's pretraining defaults where they fit a CPU).

    Attributes
    ----------
    config : str or EncoderConfig
        Encoder configuration name, e.g. ``"ecgsoup-100hz-tiny"``, or a config
        (tests use a one-block one, for instance).
    objective : {"st-mem", "ipa"}
        ST-MEM (decoder fed by the last layer) or IPA-ST-MEM (mean of all layers).
    epochs, warmup_epochs : int
        Length of training and of the linear warm-up; then a half-cosine to ``min_lr``.
    batch_size : int
    base_lr : float
        Learning rate per 256 samples; the peak rate is ``base_lr * batch_size / 256``.
    min_lr, weight_decay, betas, clip_grad : optimiser details (AdamW).
    mask_ratio : float
    precision : {"auto", "bfloat16", "float32"}
        bf16 autocast (CPU or CUDA) or plain fp32.  bf16 is fast only where the
        hardware has bf16 instructions (recent GPUs; x86 CPUs with AVX-512 BF16
        or AMX): elsewhere it is emulated, many times slower, and ``pretrain``
        warns.  ``"auto"`` (the default) takes bf16 where the device has it and
        float32 elsewhere; ``settings.json`` records the precision used.  May
        change on ``--resume``; the switch is recorded as ``precision_history``
        in every saved encoder's metadata.
    device : str
    seed : int
    checkpoint_every : int
        Steps between checkpoints (also written at the end of every epoch).
    num_threads : int or None
        torch CPU threads; None keeps torch's default.
    keep_epochs : tuple of int
        Epochs after which the encoder is also saved to ``epoch-NNN/`` (for a
        scaling curve: the probe at 45, 100, 200, ... epochs of one schedule).
        May change across a resume.
    """

    config: str | EncoderConfig = "ecgsoup-100hz-tiny"
    objective: str = "st-mem"
    epochs: int = 100
    warmup_epochs: int = 5
    batch_size: int = 64
    base_lr: float = 1.2e-3
    min_lr: float = 0.0
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    clip_grad: float = 1.0
    mask_ratio: float = 0.75
    precision: str = "auto"
    device: str = "cpu"
    seed: int = 42
    checkpoint_every: int = 50
    num_threads: int | None = None
    decoder: dict = field(default_factory=dict)
    keep_epochs: tuple = ()

    def encoder_config(self) -> EncoderConfig:
        if isinstance(self.config, EncoderConfig):
            return self.config
        if isinstance(self.config, dict):
            return EncoderConfig.from_dict(self.config)
        return get_config(self.config)

    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def validate(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}; expected one of {sorted(OBJECTIVES)}.")
        if self.precision not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"precision={self.precision!r}; expected 'auto', 'bfloat16' or 'float32'.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1.")


def lr_at_step(step: int, total_steps: int, warmup_steps: int, peak: float, minimum: float = 0.0) -> float:
    """Linear warm-up to ``peak`` then a half-cosine to ``minimum`` (per step)."""
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _epoch_batches(n_records: int, batch_size: int, seed: int, epoch: int):
    order = np.random.default_rng([seed, epoch]).permutation(n_records)
    return [order[i : i + batch_size] for i in range(0, n_records, batch_size)]


def _crop(data: np.ndarray, rows: np.ndarray, length: int, seed: int, step: int) -> torch.Tensor:
    """One random ``length`` crop per record, z-scored per lead."""
    total = data.shape[-1]
    offsets = np.random.default_rng([seed, step, 1]).integers(0, total - length + 1, size=len(rows))
    batch = np.stack([data[r, :, o : o + length] for r, o in zip(rows, offsets)])
    return torch.from_numpy(zscore(batch, axis=-1))


def _val_windows(data: np.ndarray, length: int) -> np.ndarray:
    """Windows of ``length`` with stride ``length // 2``, as ``(n, C, length)``."""
    starts = range(0, data.shape[-1] - length + 1, max(1, length // 2))
    return np.concatenate([data[:, :, s : s + length] for s in starts])


def _autocast(settings: PretrainSettings):
    device_type = "cuda" if settings.device.startswith("cuda") else "cpu"
    enabled = settings.precision == "bfloat16"
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)


@torch.inference_mode()
def _validation_loss(model: MaskedAutoencoder, windows: np.ndarray, settings: PretrainSettings) -> float:
    model.eval()
    total, count = 0.0, 0
    for i, start in enumerate(range(0, len(windows), settings.batch_size)):
        x = torch.from_numpy(zscore(windows[start : start + settings.batch_size], axis=-1))
        generator = torch.Generator().manual_seed(settings.seed * 7919 + i)  # same masks every epoch
        with _autocast(settings):
            loss = model(x.to(settings.device), generator=generator).loss
        total += float(loss) * len(x)
        count += len(x)
    model.train()
    return total / max(count, 1)


def _build_model(settings: PretrainSettings, config: EncoderConfig) -> MaskedAutoencoder:
    decoder = {**default_decoder_settings(config.width), **settings.decoder}
    encoder = new_encoder(config)
    with torch.random.fork_rng(devices=[]):
        model = MaskedAutoencoder(
            encoder, mask_ratio=settings.mask_ratio, aggregation=OBJECTIVES[settings.objective], **decoder
        )
    return model.init_weights(torch.Generator().manual_seed(settings.seed))


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_data(data: np.ndarray, config: EncoderConfig, what: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 3 or data.shape[1] != config.n_leads:
        raise ValueError(
            f"{what} data must be (records, {config.n_leads} leads, time) in the model's lead "
            f"order at {config.sampling_rate:g} Hz; got shape {data.shape}."
        )
    if data.shape[2] < config.n_samples:
        raise ValueError(
            f"{what} records have {data.shape[2]} samples; the model needs at least {config.n_samples}."
        )
    check_finite(data, f"{what.lower()} data")
    return data


def pretrain(
    train: np.ndarray,
    val: np.ndarray,
    out_dir: str | Path,
    settings: PretrainSettings | None = None,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    metadata: dict | None = None,
) -> dict:
    """Pretrain an encoder with masked reconstruction; see the module docstring.

    Parameters
    ----------
    train, val : ndarray of shape (n_records, n_leads, n_samples)
        Signals in the model's lead order and sampling rate (any scale: each
        crop is z-scored per lead).  Records may be longer than the model
        window; training takes one random crop per record per epoch.
    out_dir : str or Path
        Where checkpoints, the best encoder and the log go.
    settings : PretrainSettings, optional
    resume : bool, default=False
        Continue from ``out_dir/checkpoint.pt`` (its settings must match).
    max_steps : int, optional
        Stop after this global step (the schedule still spans all epochs); used
        to run a long schedule in several sessions.
    progress : bool, default=True
        Show a tqdm bar.
    metadata : dict, optional
        Extra facts (data source) written into the best model's config.json.

    Returns
    -------
    summary : dict
        ``step``, ``epoch``, ``best_val_loss``, ``last_train_loss``, paths.
    """
    settings = settings or PretrainSettings()
    settings.validate()
    settings = replace(settings, precision=resolve_precision(settings.precision, settings.device))
    warn_if_bf16_emulated(settings.precision, settings.device, "pretrain")
    config = settings.encoder_config()
    train = _check_data(train, config, "Training")
    val = _check_data(val, config, "Validation")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)

    model = _build_model(settings, config).to(settings.device)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.peak_lr(),
        betas=tuple(settings.betas),
        eps=1e-8,
    )
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    warmup_steps = settings.warmup_epochs * steps_per_epoch
    state = {"step": 0, "best_val_loss": math.inf, "epoch_loss_sum": 0.0, "epoch_count": 0,
             "precision_history": [[0, settings.precision]]}  # fmt: skip

    checkpoint_path = out / CHECKPOINT_FILE
    if resume:
        if not checkpoint_path.exists():
            raise FileNotFoundError(f"--resume given but {checkpoint_path} does not exist.")
        saved = _resumable(load_checkpoint(checkpoint_path, map_location=settings.device), checkpoint_path)
        if _comparable(saved["settings"]) != _comparable(settings):
            raise ValueError(
                f"{checkpoint_path} was written with different settings; resume with the same "
                f"settings or start a new --out directory.\nsaved: {saved['settings']}\nnow:   {_comparable(settings)}"
            )
        try:
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ValueError(f"{checkpoint_path} does not fit this model and optimiser ({first}); it is not this "
                             f"run's checkpoint. {_FRESH_START}") from None  # fmt: skip
        state = saved["state"]
        # Checkpoints written before precision could change on resume carry it in their settings.
        history = state.setdefault("precision_history", [[0, saved["settings"].get("precision", settings.precision)]])
        if history[-1][1] != settings.precision:
            history.append([state["step"], settings.precision])
        _truncate_log(out / LOG_FILE, state["step"])
    else:
        (out / LOG_FILE).unlink(missing_ok=True)
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2, default=list) + "\n")

    def checkpoint():
        _save_atomic(
            {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "state": dict(state),
             "settings": _comparable(settings)},
            checkpoint_path,
        )

    val_windows = _val_windows(val, config.n_samples)
    last_step = total_steps if max_steps is None else min(total_steps, max_steps)
    bar = tqdm(total=last_step, initial=state["step"], disable=not progress, desc="pretrain", unit="step")
    model.train()
    started = time.perf_counter()
    while state["step"] < last_step:
        epoch, within = divmod(state["step"], steps_per_epoch)
        rows = _epoch_batches(len(train), settings.batch_size, settings.seed, epoch)[within]
        x = _crop(train, rows, config.n_samples, settings.seed, state["step"]).to(settings.device)
        for group in optimiser.param_groups:
            group["lr"] = lr_at_step(state["step"], total_steps, warmup_steps, settings.peak_lr(), settings.min_lr)
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + state["step"])
        with _autocast(settings):
            loss = model(x, generator=generator).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
        optimiser.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"Loss became {value} at step {state['step']}; lower base_lr.")
        state["step"] += 1
        state["epoch_loss_sum"] += value * len(rows)
        state["epoch_count"] += len(rows)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}", epoch=epoch)
        if state["step"] % steps_per_epoch == 0:
            _end_epoch(model, optimiser, state, settings, val_windows, out, epoch, time.perf_counter() - started, metadata)
            started = time.perf_counter()
            checkpoint()
        elif state["step"] % settings.checkpoint_every == 0:
            checkpoint()
    bar.close()
    checkpoint()
    best = out / "best"
    finished = state["step"] >= total_steps
    return {
        "step": state["step"],
        "epoch": state["step"] / steps_per_epoch,
        "total_steps": total_steps,
        "finished": finished,
        # None (JSON null) until a whole epoch has been validated: never Infinity.
        "best_val_loss": state["best_val_loss"] if math.isfinite(state["best_val_loss"]) else None,
        "last_train_loss": state.get("last_train_loss"),
        "best_model": str(best) if (best / "config.json").exists() else None,
        "checkpoint": str(checkpoint_path),
        "resume": None if finished else "run the same command again with --resume to continue",
    }


# May change across a resume: how the steps are computed, not which steps are taken.  The
# precision is one of them because bf16 autocast is emulated, and many times slower than
# float32, on CPUs without bf16 instructions; the switch is recorded in ``precision_history``.
VOLATILE_SETTINGS = ("num_threads", "device", "checkpoint_every", "keep_epochs", "precision")


def _comparable(settings: PretrainSettings | dict) -> dict:
    """Settings that must not change across a resume (threads, device and precision may)."""
    keep = dict(settings) if isinstance(settings, dict) else asdict(settings)
    for volatile in VOLATILE_SETTINGS:
        keep.pop(volatile, None)
    keep["betas"] = list(keep["betas"])
    return keep


def _end_epoch(model, optimiser, state, settings, val_windows, out, epoch, seconds, metadata) -> None:
    train_loss = state["epoch_loss_sum"] / max(state["epoch_count"], 1)
    val_loss = _validation_loss(model, val_windows, settings)
    state.update(epoch_loss_sum=0.0, epoch_count=0, last_train_loss=train_loss)
    facts = {
        "pretrained": True,
        "objective": settings.objective,
        "epoch": epoch + 1,
        "step": state["step"],
        "train_loss": round(train_loss, 5),
        "val_loss": round(val_loss, 5),
        "settings": _comparable(settings),
        # [[first step, precision], ...]: bf16 autocast or float32, as the steps were computed.
        "precision_history": [list(entry) for entry in state["precision_history"]],
        **(metadata or {}),
    }
    if val_loss < state["best_val_loss"]:
        state["best_val_loss"] = val_loss
        save_model(model.encoder, out / "best", metadata=facts)
    if epoch + 1 in tuple(settings.keep_epochs):
        save_model(model.encoder, out / f"epoch-{epoch + 1:03d}", metadata=facts)
    row = {
        "epoch": epoch + 1,
        "step": state["step"],
        "lr": f"{optimiser.param_groups[0]['lr']:.3e}",
        "train_loss": f"{train_loss:.5f}",
        "val_loss": f"{val_loss:.5f}",
        "best_val_loss": f"{state['best_val_loss']:.5f}",
        "seconds": f"{seconds:.1f}",
    }
    log = out / LOG_FILE
    new = not log.exists()
    with open(log, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_log(log: Path, step: int) -> None:
    """Drop log rows of epochs finished after the checkpoint (a run stopped between checkpoints).

    Those epochs are trained again on resume; keeping their old rows would list them twice.
    """
    if not log.exists():
        return
    with open(log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if int(row["step"]) <= step]
    if len(kept) == len(rows):
        return
    partial = log.with_suffix(".csv.partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(partial, log)


_FRESH_START = "Resume from the run's own checkpoint, or start over without --resume (or in a new --out)."


def _resumable(saved, path: Path) -> dict:
    """``saved`` when it has the parts a resume needs (a foreign ``.pt`` lacks them); else one-line ValueError."""
    parts = {"model": dict, "optimiser": dict, "state": dict, "settings": dict}
    if not isinstance(saved, dict) or any(not isinstance(saved.get(k), t) for k, t in parts.items()):
        found = sorted(map(str, saved))[:6] if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{path} is not a checkpoint of `ecgsoup pretrain` (it needs model, optimiser, state and "
                         f"settings; found {found}). {_FRESH_START}")  # fmt: skip
    step = saved["state"].get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{path}: its state has no valid step count (step={step!r}). {_FRESH_START}")
    return saved


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a ``checkpoint.pt`` safely: tensors and plain containers only.

    ``torch.load`` runs with ``weights_only=True``, so a crafted file that
    would execute code when unpickled is refused with a ``ValueError`` that
    names it.
    """
    import pickle
    import stat

    path = Path(path)
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):  # a FIFO would block the read, a device never end it
        raise ValueError(f"{path} is not a regular file, so it is not a checkpoint. {_FRESH_START}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (a run killed while it was first written?). {_FRESH_START}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers, so it was not loaded "
            f"(loading it could run code): {first}. Use a checkpoint written by `ecgsoup pretrain`."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:
        # A truncated or corrupt file fails inside torch's zip reader in many ways.
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{path} cannot be read as a checkpoint (truncated or corrupt: {first}). "
                         f"{_FRESH_START}") from None  # fmt: skip


def compact_checkpoint(source: str | Path, destination: str | Path) -> Path:
    """Write a smaller copy of a checkpoint for committing or moving a run.

    The model weights stay float32 (resuming continues from exactly these
    weights); the optimiser's moment estimates are stored as bfloat16, which
    halves them. ``pretrain(resume=True)`` reads either form: AdamW casts its
    state back to the parameters' float32 on load, so a resumed run follows the
    same schedule with moments rounded to about three significant digits.
    """
    saved = load_checkpoint(source)
    for per_param in saved["optimiser"]["state"].values():
        for key, value in per_param.items():
            if key != "step" and torch.is_tensor(value) and value.is_floating_point():
                per_param[key] = value.to(torch.bfloat16)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(saved, destination)
    return destination


def load_checkpoint_encoder(out_dir: str | Path):
    """The encoder of the latest ``checkpoint.pt`` in ``out_dir`` (for inspection)."""
    saved = load_checkpoint(Path(out_dir) / CHECKPOINT_FILE)
    settings = PretrainSettings(**{**saved["settings"], "betas": tuple(saved["settings"]["betas"])})
    model = _build_model(settings, settings.encoder_config())
    model.load_state_dict(saved["model"])
    return model.encoder.eval()
