"""Loading and saving encoder weights; never a silent random initialisation.

Two formats are read:

* **ecgsoup's own**: a directory with ``model.safetensors`` and ``config.json``.
  The JSON carries the architecture, the preprocessing contract (sampling
  rate, length, patch, lead order, units, normalisation) and the sha256 of
  the weights file, which is verified on every load.
* **the original ST-MEM release** (``.pth``/``.pt``, read with
  ``weights_only=True``): the architecture is read off the tensor shapes and
  the key names are mapped as described in ``_STMEM_KEY_MAP``.

Anything that does not fit (missing or unexpected keys, wrong shapes, wrong
hash, missing file) raises :class:`WeightsError` with the path and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from importlib import resources
from pathlib import Path

import torch

from ecgsoup.backbones.stmem.config import EncoderConfig, get_config
from ecgsoup.backbones.stmem.model import STMEMEncoder
from ecgsoup.leads import STANDARD_LEAD_ORDER

__all__ = [
    "WeightsError",
    "DEFAULT_MODEL",
    "load_model",
    "load_config",
    "save_model",
    "random_model",
    "load_stmem_checkpoint",
    "default_model_path",
    "model_fingerprint",
    "new_encoder",
]

FORMAT = "ecgsoup-encoder"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DEFAULT_MODEL = "default"
_DEFAULT_DIRNAME = "ecgsoup-100hz-tiny"
# torch checkpoint files read as original ST-MEM (or Lightning / fine-tuned) checkpoints.
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")


from ecgsoup.backbones._base import BackboneCard  # noqa: E402
from ecgsoup.backbones._checkpoint import (  # noqa: E402
    WeightsError,
    build_checked,
    file_in_folder,
    load_strict,
    read_checkpoint,
    sha256_file,
    unwrap,
)
from ecgsoup.backbones.stmem.model import stmem_card  # noqa: E402


def default_model_path() -> Path:
    """Directory of the pretrained model bundled with the package."""
    return Path(str(resources.files("ecgsoup.weights") / _DEFAULT_DIRNAME))


_sha256 = sha256_file


def model_fingerprint(encoder) -> str:
    """sha256 identifying a backbone's weights (the file hash when loaded from one)."""
    import dataclasses

    known = getattr(encoder, "metadata", {}).get("sha256")
    if known:
        return known
    config = encoder.config.to_dict() if hasattr(encoder.config, "to_dict") else dataclasses.asdict(encoder.config)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


def new_encoder(config: EncoderConfig) -> STMEMEncoder:
    """Build an (uninitialised) encoder without consuming the global torch RNG.

    torch's layer constructors draw default initial values from the global
    generator; building inside ``fork_rng`` keeps a user's seeded stream intact.
    """
    with torch.random.fork_rng(devices=[]):
        return STMEMEncoder(config)


def random_model(config: str | EncoderConfig = "ecgsoup-100hz-tiny", seed: int = 0) -> STMEMEncoder:
    """A randomly initialised encoder, for tests and as the untrained baseline.

    It is marked ``metadata["pretrained"] = False``; embeddings from it carry
    no learned ECG knowledge.

    Parameters
    ----------
    config : str or EncoderConfig, default="ecgsoup-100hz-tiny"
        A name accepted by :func:`ecgsoup.backbones.stmem.get_config`, or a config.
    seed : int, default=0
        Seed of a local generator; the global torch RNG is untouched.
    """
    if isinstance(config, str):
        config = get_config(config)
    encoder = new_encoder(config)
    encoder.init_weights(torch.Generator().manual_seed(int(seed)))
    encoder.metadata = {"pretrained": False, "source": f"random init, seed {seed}"}
    encoder.card = BackboneCard(
        name=f"random:{config.name}", family="stmem", license="none",
        source=f"untrained, randomly initialised (seed {seed})",
    )
    return encoder.eval()


def save_model(
    encoder: STMEMEncoder,
    directory: str | Path,
    *,
    dtype: str = "float32",
    metadata: dict | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``.

    Parameters
    ----------
    encoder : STMEMEncoder
        The encoder to save.
    directory : str or Path
        Created if missing; existing files of the same names are replaced.
    dtype : {"float32", "float16"}, default="float32"
        Storage precision (float16 halves the file; loading casts back).
    metadata : dict, default=None
        Extra JSON-serialisable facts (training data, steps, losses, licence).
    """
    from safetensors.torch import save_file

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype={dtype!r}; expected 'float32' or 'float16'.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: tensor.detach().cpu().to(getattr(torch, dtype)).contiguous()
        for name, tensor in encoder.state_dict().items()
    }
    weights_path = directory / WEIGHTS_FILE
    save_file(tensors, str(weights_path))
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": "stmem",
        "config": encoder.config.to_dict(),
        "weights": {"file": WEIGHTS_FILE, "dtype": dtype, "sha256": _sha256(weights_path)},
        "metadata": {**getattr(encoder, "metadata", {}), **(metadata or {})},
    }
    info["metadata"].pop("sha256", None)
    card = getattr(encoder, "card", None)
    if card is not None and not card.name.startswith("random:"):
        info["card"] = card.to_dict()
    (directory / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def load_model(source: str | Path | STMEMEncoder = DEFAULT_MODEL, **stmem_options) -> STMEMEncoder:
    """Load an encoder from the bundled default, a directory, or a checkpoint file.

    Parameters
    ----------
    source : str, Path or STMEMEncoder, default="default"
        ``"default"`` for the bundled pretrained model; a directory (or its
        ``config.json`` / ``model.safetensors``) in ecgsoup's format; or an
        original ST-MEM ``.pth``/``.pt`` file.  An encoder is returned as is.
    **stmem_options
        Passed to :func:`load_stmem_checkpoint` for ``.pth`` files
        (``sampling_rate``, ``lead_names``).

    Returns
    -------
    encoder : STMEMEncoder
        In eval mode, with ``encoder.metadata`` (including ``sha256``).
    """
    if isinstance(source, STMEMEncoder):
        return source
    if isinstance(source, str) and source == DEFAULT_MODEL:
        path = default_model_path()
        if not (path / CONFIG_FILE).exists():
            raise WeightsError(
                f"The bundled default model is missing from {path}. Reinstall ecgsoup, "
                "or pass model=<path to a model directory>."
            )
    else:
        path = Path(source).expanduser()
    if not path.exists():
        raise WeightsError(
            f"No model at {str(path)!r}: the path does not exist. Pass 'default' for "
            "the bundled model, a directory holding config.json + model.safetensors, "
            "or an original ST-MEM .pth file."
        )
    if path.suffix in _CHECKPOINT_SUFFIXES:
        return load_stmem_checkpoint(path, **stmem_options)
    if path.is_file():
        path = path.parent
    return _load_ecgsoup_dir(path)


def load_config(source: str | Path | EncoderConfig | STMEMEncoder = DEFAULT_MODEL) -> EncoderConfig:
    """The :class:`EncoderConfig` (architecture + input contract) of a model, cheaply.

    Only ``config.json`` is read: no weights are loaded and no hash is checked,
    so preprocessing can learn the model's sampling rate, window and lead order
    without paying for the encoder.

    Parameters
    ----------
    source : str, Path, EncoderConfig or STMEMEncoder, default="default"
        ``"default"`` for the bundled model; a configuration name accepted by
        :func:`ecgsoup.backbones.stmem.get_config` (e.g. ``"ecgsoup-100hz-tiny"``); a
        model directory (or its ``config.json`` / ``model.safetensors``); an
        original ST-MEM ``.pth`` file (its architecture is only known from the
        tensor shapes, so this one is loaded); an encoder or a config.

    Returns
    -------
    config : EncoderConfig

    Raises
    ------
    WeightsError
        If the path does not exist or its ``config.json`` is unusable.
    """
    from ecgsoup.backbones.stmem.config import list_configs

    if isinstance(source, EncoderConfig):
        return source
    if isinstance(source, STMEMEncoder):
        return source.config
    if isinstance(source, str) and source == DEFAULT_MODEL:
        path = default_model_path()
        if not (path / CONFIG_FILE).exists():
            # The bundled directory is named after its configuration, so its
            # contract is known even where the weights are not installed
            # (load_model still refuses to run without them).
            return get_config(_DEFAULT_DIRNAME)
    elif isinstance(source, str) and source.startswith("random"):
        # LayerwiseEmbedder's untrained baselines: "random" (tiny) or "random:<config>".
        name = source.partition(":")[2] or "ecgsoup-100hz-tiny"
        return get_config(name)
    elif isinstance(source, str) and (
        source in list_configs() or source in {n.rsplit("-", 1)[0] for n in list_configs()}
    ) and not Path(source).exists():
        return get_config(source)
    else:
        path = Path(source).expanduser()
    if not path.exists():
        raise WeightsError(
            f"No model at {str(path)!r}: the path does not exist. Pass 'default', a "
            f"configuration name ({', '.join(list_configs())}), a directory holding "
            "config.json + model.safetensors, or an original ST-MEM .pth file."
        )
    if path.suffix in _CHECKPOINT_SUFFIXES:
        return load_stmem_checkpoint(path).config
    if path.is_file():
        path = path.parent
    config_path = path / CONFIG_FILE
    if not config_path.exists():
        raise WeightsError(f"{path} has no {CONFIG_FILE}; it is not an ecgsoup model directory.")
    try:
        info = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{config_path} is not valid JSON ({exc}).") from exc
    if info.get("format") != FORMAT or "config" not in info:
        raise WeightsError(f"{config_path} is not an ecgsoup encoder config (format={info.get('format')!r}).")
    try:
        return EncoderConfig.from_dict(info["config"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: config: {str(exc).splitlines()[0]} Fix the config, or re-export the "
                           "model with save_model.") from None  # fmt: skip


def _load_ecgsoup_dir(directory: Path) -> STMEMEncoder:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path = directory / CONFIG_FILE
    if not config_path.exists():
        raise WeightsError(
            f"{directory} has no {CONFIG_FILE}. An ecgsoup model directory holds "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} (written by ecgsoup.backbones.stmem.save_model "
            "or `ecgsoup pretrain`)."
        )
    try:
        info = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{config_path} is not valid JSON ({exc}).") from exc
    if info.get("format") != FORMAT:
        raise WeightsError(f"{config_path} is not an ecgsoup encoder config (format={info.get('format')!r}).")
    weights = info.get("weights")
    if not isinstance(weights, dict) or not {"file", "sha256"} <= set(weights) or "config" not in info:
        raise WeightsError(
            f"{config_path} lacks its 'weights' entry (file and sha256) or 'config'; it was not written "
            "by ecgsoup.backbones.stmem.save_model. Re-export the model with save_model or `ecgsoup pretrain --export`."
        )
    weights_path = file_in_folder(directory, weights["file"], config_path)
    # Every size is checked, and compared with the file's tensor shapes, before anything is built.
    try:
        config = EncoderConfig.from_dict(info["config"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: config: {str(exc).splitlines()[0]} Fix the config, or re-export the "
                           "model with save_model.") from None  # fmt: skip
    expected = weights["sha256"]
    actual = _sha256(weights_path)
    if actual != expected:
        raise WeightsError(
            f"sha256 of {weights_path} is {actual[:12]}…, but {config_path} records "
            f"{str(expected)[:12]}…: the file is corrupt or belongs to another model. "
            "Re-copy the model directory."
        )
    encoder = build_checked(STMEMEncoder, config, weights_path, weights_path, config.name)
    try:
        state = load_file(str(weights_path))
    except SafetensorError as exc:
        raise WeightsError(f"Cannot read {weights_path}: {exc}") from exc
    _load_state_strict(encoder, state, weights_path)
    encoder.metadata = {**info.get("metadata", {}), "sha256": actual, "path": str(directory)}
    if isinstance(info.get("card"), dict):
        encoder.card = BackboneCard.from_dict(info["card"])
    else:
        encoder.card = BackboneCard(
            name=config.name, family="stmem", license=str(info.get("metadata", {}).get("license", "unstated")),
            source=f"ecgsoup model directory {directory.name}",
        )
    return encoder.eval()


def _load_state_strict(encoder: STMEMEncoder, state: dict, origin) -> None:
    load_strict(encoder, state, origin, name=encoder.config.name)


def _short(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


# --- the original ST-MEM release -------------------------------------------------
# original name (regex) -> ecgsoup name.  `lead_embeddings.{k}` are stacked.
_STMEM_KEY_MAP = [
    (r"to_patch_embedding\.1\.(weight|bias)", r"patch_embedding.norm_in.\1"),
    (r"to_patch_embedding\.2\.(weight|bias)", r"patch_embedding.proj.\1"),
    (r"to_patch_embedding\.3\.(weight|bias)", r"patch_embedding.norm_out.\1"),
    (r"pos_embedding", r"pos_embedding"),
    (r"sep_embedding", r"sep_embedding"),
    (r"block(\d+)\.attn\.norm\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
    (r"block(\d+)\.attn\.fn\.to_qkv\.(weight|bias)", r"blocks.\1.qkv.\2"),
    (r"block(\d+)\.attn\.fn\.to_out\.0\.(weight|bias)", r"blocks.\1.proj.\2"),
    (r"block(\d+)\.ff\.norm\.(weight|bias)", r"blocks.\1.mlp_norm.\2"),
    (r"block(\d+)\.ff\.fn\.net\.0\.(weight|bias)", r"blocks.\1.fc1.\2"),
    (r"block(\d+)\.ff\.fn\.net\.3\.(weight|bias)", r"blocks.\1.fc2.\2"),
    (r"norm\.(weight|bias)", r"norm.\1"),
]
_WRAPPER_KEYS = ("model", "state_dict", "encoder", "model_state_dict")
_PREFIXES = ("module.", "model.", "net.")
# Known parts of fine-tuned ECG-Soup / ST-MEM files that are not the encoder: the
# classifier head (``head.weight``, or the bn-drop-lin ``head.0.*``..) and the PMA gate.
_IGNORED = re.compile(r"(head|gating|gate)\..+")
_logger = logging.getLogger("ecgsoup")


def _unwrap(obj, origin) -> tuple[dict, list[str]]:
    """The encoder's tensors from a checkpoint, with notes on what was unwrapped or left out.

    Handles wrappers (``{"model": ...}``, Lightning's ``{"state_dict": ...}``), whole-model
    prefixes (``module.``, ``model.``), and full ST-MEM files holding the encoder under
    ``encoder.`` next to the decoder (and a duplicate ``to_patch_embedding``).
    """
    obj, notes = unwrap(obj, origin, wrapper_keys=_WRAPPER_KEYS, prefixes=_PREFIXES, submodule="encoder.")
    ignored = sorted(k for k in obj if _IGNORED.fullmatch(k))
    if ignored:
        kinds = sorted({k.split(".")[0] for k in ignored})
        note = (f"ignored {len(ignored)} tensors of a fine-tuned {' and '.join(kinds)} "
                f"({_short(ignored, 3)}): only the encoder is used")  # fmt: skip
        notes.append(note)
        _logger.warning("%s: %s", origin, note)
        obj = {k: v for k, v in obj.items() if k not in ignored}
    return obj, notes


def _map_stmem_keys(state: dict, origin) -> dict:
    mapped, leads, unknown = {}, {}, []
    for key, tensor in state.items():
        lead = re.fullmatch(r"lead_embeddings\.(\d+)", key)
        if lead:
            leads[int(lead.group(1))] = tensor
            continue
        for pattern, target in _STMEM_KEY_MAP:
            if re.fullmatch(pattern, key):
                mapped[re.sub(pattern, target, key)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{origin}: keys not part of an ST-MEM encoder: {_short(sorted(unknown))}. "
            "Is this an ST-MEM checkpoint?"
        )
    if leads:
        if sorted(leads) != list(range(len(leads))):
            raise WeightsError(f"{origin}: lead embeddings are not numbered 0..{len(leads) - 1}.")
        mapped["lead_embeddings"] = torch.stack([leads[i].reshape(-1) for i in range(len(leads))])
    if "pos_embedding" in mapped:
        mapped["pos_embedding"] = mapped["pos_embedding"].reshape(1, *mapped["pos_embedding"].shape[-2:])
    return mapped


def load_stmem_checkpoint(
    path: str | Path,
    *,
    sampling_rate: float | None = None,
    lead_names: tuple[str, ...] = STANDARD_LEAD_ORDER,
    bandpass: tuple[float, float] | None = (0.67, 40.0),
) -> STMEMEncoder:
    """Load an original ST-MEM encoder checkpoint that a user downloaded.

    The architecture (width, depth, heads, MLP size, patch and window length)
    is read off the tensor shapes.  What the file cannot say - its sampling
    rate, lead order and band-pass - defaults to the original release
    (250 Hz; I, II, III, aVR, aVL, aVF, V1-V6; 0.67-40 Hz) and can be
    overridden.  The 250 Hz default is taken only when the window is the
    original one (2,250 samples in patches of 75); any other window could be
    several rates (1,000 samples are 10 s at 100 Hz or 4 s at 250 Hz), so
    ``sampling_rate`` must then be given.

    Full ST-MEM files (encoder and decoder), ``model.``/``module.`` prefixes,
    Lightning ``.ckpt`` files and fine-tuned files with a classifier head or a
    PMA gate are accepted: the encoder is taken and the rest is left out, as
    ``metadata["notes"]`` (and one logged line) say.

    Parameters
    ----------
    path : str or Path
        The ``.pth`` file.  Wrappers such as ``{"model": ...}`` and prefixes
        such as ``encoder.`` are removed and reported in ``metadata["notes"]``.
    sampling_rate : float, optional
        Hz of the data the model was trained on; required unless the window
        is the original release's (2,250 samples, patch 75: 250 Hz).
    lead_names : tuple of str, default=standard 12-lead order
    bandpass : (float, float) or None, default=(0.67, 40.0)
    """
    path = Path(path)
    raw = read_checkpoint(path)
    state, notes = _unwrap(raw, path)
    try:
        state = _map_stmem_keys(state, path)
    except RuntimeError as exc:  # tensors that cannot be stacked / reshaped as an encoder's
        raise WeightsError(f"{path}: its lead or position embeddings have unexpected shapes ({exc}).") from None
    try:
        width = state["pos_embedding"].shape[-1]
        n_patches = state["pos_embedding"].shape[1] - 2
        patch = state["patch_embedding.norm_in.weight"].shape[0]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        heads = state["blocks.0.qkv.weight"].shape[0] // (3 * 64)
        mlp_dim = state["blocks.0.fc1.weight"].shape[0]
        n_leads = state["lead_embeddings"].shape[0]
    except KeyError as exc:
        raise WeightsError(f"{path}: missing key {exc.args[0]} needed to read the architecture.") from exc
    n_samples = n_patches * patch
    if sampling_rate is None:
        if (n_samples, patch) != (2250, 75):
            rates = ", ".join(f"{n_samples / fs:g} s at {fs} Hz" for fs in (100, 250, 500))
            raise WeightsError(
                f"{path}: a {n_samples}-sample window in patches of {patch} does not settle the sampling "
                f"rate ({rates}). Pass it: load_model(path, sampling_rate=<Hz of the training data>)."
            )
        sampling_rate = 250.0
        notes.append("sampling rate 250 Hz: the original release's 2250-sample window in patches of 75")
    if n_leads != len(lead_names):
        raise WeightsError(
            f"{path} has {n_leads} lead embeddings but lead_names has {len(lead_names)}: pass the file's lead order."
        )
    try:
        config = EncoderConfig(
            name=f"st-mem-{sampling_rate:g}hz-w{width}",
            sampling_rate=float(sampling_rate),
            n_samples=n_samples,
            patch_size=patch,
            lead_names=tuple(lead_names),
            width=width,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            qkv_bias="blocks.0.qkv.bias" in state,
            bandpass=bandpass,
        )
    except ValueError as exc:  # sizes read off the tensors that no encoder has (a crafted file)
        raise WeightsError(f"{path}: {exc}") from None
    encoder = new_encoder(config)
    _load_state_strict(encoder, state, path)
    encoder.metadata = {
        "pretrained": True,
        "source": f"original ST-MEM checkpoint {path}",
        "notes": notes,
        "sha256": _sha256(path),
    }
    encoder.card = stmem_card(config, source=f"original ST-MEM checkpoint {path.name}")
    return encoder.eval()
