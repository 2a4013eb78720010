"""The one strict way ecgsoup reads weights, for every family.

* :func:`read_checkpoint` reads safetensors, or a torch file with
  ``weights_only=True`` (no pickled code ever runs; there is no fallback).
* :func:`unwrap` finds the state dict inside wrappers and strips prefixes.
* :func:`map_keys` renames original keys with a regex table and sets aside
  the declared pretraining heads, with one log line.
* :func:`fold_weight_norm` turns ``weight_g``/``weight_v`` (or
  ``parametrizations.weight.original0/1``) into a plain weight.
* :func:`load_strict` loads into a module only when every key and shape fits;
  otherwise nothing is loaded and :class:`WeightsError` names what differs.
  No module is ever left with a random initialisation in place of weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from pathlib import Path

import torch

__all__ = [
    "WeightsError",
    "regular_file",
    "file_in_folder",
    "file_shapes",
    "compare_shapes",
    "build_checked",
    "check_values",
    "sha256_file",
    "read_checkpoint",
    "unwrap",
    "map_keys",
    "fold_weight_norm",
    "load_strict",
    "short_list",
]

_logger = logging.getLogger("ecgsoup")
_MAX_CHECKPOINT_BYTES = 16 * 2**30  # no public ECG encoder comes near this


class WeightsError(ValueError):
    """Weights cannot be used: missing file, corrupt file, or wrong layout."""


def regular_file(path, what: str = "weights file") -> Path:
    """``path`` when it is a regular file (or a link to one); a folder, FIFO or device is refused.

    Checked with ``stat`` before anything opens the file: hashing ``/dev/zero``
    never ends, and opening a FIFO blocks until a writer comes.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WeightsError(f"No {what} at {path}.") from None
    except OSError as exc:
        raise WeightsError(f"Cannot read the {what} {path} ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")  # fmt: skip
        raise WeightsError(f"The {what} {path} is {kind}, not a file of weights; point to the model's "
                           ".safetensors or .pth file.")  # fmt: skip
    return path


def file_in_folder(folder, name, origin) -> Path:
    """The regular file ``name`` (from ``origin``, a config) inside ``folder``; never a path that leaves it.

    An absolute name or one with ``..`` that points outside the folder is
    refused: a model folder's config names its own weights, nothing else.
    """
    folder = Path(folder)
    if not isinstance(name, str) or not name.strip():
        raise WeightsError(f"{origin}: weights.file is {name!r}; it must name the weights file in {folder} "
                           "(e.g. 'model.safetensors').")  # fmt: skip
    target = os.path.normpath(os.path.join(os.path.abspath(folder), name))
    if os.path.commonpath([target, os.path.abspath(folder)]) != os.path.abspath(folder):
        raise WeightsError(f"{origin}: weights.file {name!r} leaves the model folder {folder}; name a file "
                           "inside it (e.g. 'model.safetensors').")  # fmt: skip
    return regular_file(target)


def file_shapes(path) -> dict[str, tuple[int, ...]] | None:
    """Tensor shapes of a safetensors file, read from its header only (nothing is loaded); None otherwise."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"Cannot read {path} as safetensors ({exc}).") from None


def compare_shapes(expected: dict, found: dict, origin, label: str) -> None:
    """Raise :class:`WeightsError` unless ``found`` has exactly ``expected``'s keys and shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: file {tuple(found[k])} vs model {tuple(expected[k])}"
        for k in sorted(set(found) & set(expected))
        if tuple(found[k]) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {short_list(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes: {short_list(wrong)}")
        raise WeightsError(
            f"Weights in {origin} do not fit {label}: " + "; ".join(parts)
            + ". Nothing was loaded (no random initialisation is used in its place)."
        )


def build_checked(factory, config, weights_path, origin, label: str):
    """Build ``factory(config)`` only after its shapes match the weights file's header.

    The module is first built on the ``meta`` device (no memory), so a config
    that says width 10**6 or a window of 10**11 samples is refused by the
    comparison instead of allocating terabytes.
    """
    import torch

    shapes = file_shapes(weights_path)
    if shapes is not None:
        with torch.device("meta"):
            skeleton = factory(config)
        compare_shapes({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, shapes, origin, label)
        del skeleton
    with torch.random.fork_rng(devices=[]):
        return factory(config)


def check_values(state: dict, expected: dict, origin) -> None:
    """Refuse integer tensors where the model holds floats, and any NaN or infinite value, naming the tensor."""
    for key in sorted(state):
        tensor = state[key]
        want = expected.get(key)
        if want is not None and want.is_floating_point() and not tensor.is_floating_point():
            raise WeightsError(
                f"{origin}: tensor {key} is {str(tensor.dtype).replace('torch.', '')}, not floating point: these "
                "are not trained weights. Use the model's original float checkpoint."
            )
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise WeightsError(
                    f"{origin}: tensor {key} holds {bad} of {tensor.numel()} values that are NaN or infinite: the "
                    "weights are corrupt (or from a diverged training run). Use another checkpoint."
                )


def sha256_file(path: Path) -> str:
    """sha256 of a regular file, read in 1 MiB blocks (a device, FIFO or folder is refused first)."""
    regular_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def short_list(items, limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def read_checkpoint(path) -> object:
    """The contents of a weights file: safetensors, or torch with ``weights_only=True``.

    Raises :class:`WeightsError` with the path and the reason when the file is
    missing, too large to be an ECG encoder, or holds pickled objects that are
    not plain tensors and containers.
    """
    path = regular_file(path)
    size = path.stat().st_size
    if size > _MAX_CHECKPOINT_BYTES:
        raise WeightsError(f"{path} is {size / 2**30:.1f} GiB, larger than any ECG encoder; refusing to read it.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"Cannot read {path} as safetensors ({exc}).") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise WeightsError(
            f"Cannot read {path} as a torch checkpoint with weights_only=True "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "ecgsoup never unpickles code: re-save the state dict once with "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth') "
            "in a trusted session, or convert it to safetensors."
        ) from exc


def unwrap(obj, origin, wrapper_keys=("state_dict", "model", "encoder", "model_state_dict"),
           prefixes=("module.", "model."), submodule: str | None = None) -> tuple[dict, list[str]]:
    """The tensors of a checkpoint, with notes on what was unwrapped or stripped.

    ``submodule`` (e.g. ``"encoder."``): when some keys carry this prefix, only
    those are kept (a full pretraining file holds the encoder beside a decoder).
    """
    notes = []
    while isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        key = next((k for k in wrapper_keys if k in obj), None)
        if key is None:
            raise WeightsError(f"{origin} holds no state dict (top-level keys: {short_list(sorted(map(str, obj)))}).")
        notes.append(f"unwrapped '{key}'")
        obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{origin} does not hold a state dict (got {type(obj).__name__}).")
    obj = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    changed = True
    while changed and obj:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in obj):
                obj = {k[len(prefix):]: v for k, v in obj.items()}
                notes.append(f"stripped prefix '{prefix}'")
                changed = True
        inner = [k for k in obj if submodule and k.startswith(submodule)]
        if inner:
            others = len(obj) - len(inner)
            obj = {k[len(submodule):]: obj[k] for k in inner}
            notes.append(
                f"stripped prefix '{submodule}'" if not others
                else f"took the {submodule.rstrip('.')} ('{submodule}*', {len(obj)} tensors) and left out {others} "
                "other tensors (decoder and duplicates of a full pretraining file)"
            )
            changed = True
    return obj, notes


def per_layer_keys(prefix: str, parts) -> list[tuple[str, str]]:
    """Key-map rows for every transformer layer: ``{prefix}.{i}.{original}`` -> ``blocks.{i}.{ours}``.

    ``parts`` is ``[(original regex, our name), ...]`` without the layer index and
    without the trailing ``weight``/``bias``; a group inside the original regex is
    referred to as ``\\2`` in our name (the layer index is ``\\1``).
    """
    rows = []
    for original, ours in parts:
        param = re.compile(original).groups + 2
        rows.append((rf"{prefix}\.(\d+)\.{original}\.(weight|bias)", rf"blocks.\1.{ours}.\{param}"))
    return rows


def fuse_qkv(state: dict, n_layers: int, origin, original: str) -> dict:
    """Stack each layer's q, k and v projections into one ``blocks.{i}.attn.qkv`` tensor.

    ``original`` spells a projection's key in the checkpoint, for the message when
    one of the three is missing: ``"encoder.layers.{i}.attention.{p}_proj.{kind}"``.
    """
    out = dict(state)
    for i in range(n_layers):
        for kind in ("weight", "bias"):
            parts = [f"blocks.{i}.attn.{p}.{kind}" for p in "qkv"]
            present = [p for p in parts if p in out]
            if not present:
                continue
            if len(present) < 3:
                absent = [original.format(i=i, p=p, kind=kind) for p, name in zip("qkv", parts) if name not in out]
                raise WeightsError(f"{origin}: missing keys: {short_list(absent)}. Nothing was loaded.")
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([out.pop(p) for p in parts], dim=0)
    return out


def map_keys(state: dict, key_map, ignored, origin, family: str) -> tuple[dict, list[str]]:
    """Rename ``state`` with ``key_map`` ([(regex, replacement), ...]); set ``ignored`` aside.

    ``ignored`` is a regex of original keys that are known and unused (heads,
    quantizers, stored but never-run tensors); they are dropped with one log
    line.  Any other key that no pattern maps is an error.
    """
    ignored_re = re.compile(ignored) if ignored else None
    mapped, dropped, unknown = {}, [], []
    for key, tensor in state.items():
        if ignored_re is not None and ignored_re.fullmatch(key):
            dropped.append(key)
            continue
        for pattern, target in key_map:
            if re.fullmatch(pattern, key):
                mapped[re.sub(pattern, target, key)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{origin}: keys not part of a {family} encoder: {short_list(sorted(unknown))}. "
            f"Is this a {family} checkpoint?"
        )
    notes = []
    if dropped:
        note = f"ignored {len(dropped)} tensors not used for embeddings ({short_list(sorted(dropped), 4)})"
        notes.append(note)
        _logger.warning("%s: %s", origin, note)
    return mapped, notes


def fold_weight_norm(state: dict, prefix: str, dim: int = 2) -> tuple[dict, bool]:
    """Replace a weight-normalised weight under ``prefix`` by ``g * v / ||v||``.

    Accepts both spellings: ``{prefix}.weight_g``/``weight_v`` and
    ``{prefix}.parametrizations.weight.original0``/``original1``.  The norm is
    taken over every dimension except ``dim`` (torch's ``weight_norm(dim=...)``).
    Returns the new dict and whether a fold happened.
    """
    for g_key, v_key in (
        (f"{prefix}.weight_g", f"{prefix}.weight_v"),
        (f"{prefix}.parametrizations.weight.original0", f"{prefix}.parametrizations.weight.original1"),
    ):
        if g_key in state and v_key in state:
            g, v = state[g_key].float(), state[v_key].float()
            others = [d for d in range(v.ndim) if d != dim % v.ndim]
            weight = g * v / v.norm(dim=others, keepdim=True)
            out = {k: t for k, t in state.items() if k not in (g_key, v_key)}
            out[f"{prefix}.weight"] = weight
            return out, True
    return state, False


def load_strict(module: torch.nn.Module, state: dict, origin, name: str | None = None) -> None:
    """Load ``state`` into ``module`` only if every key, shape and value fits; else raise."""
    expected = module.state_dict()
    label = name or type(module).__name__
    compare_shapes({k: tuple(v.shape) for k, v in expected.items()},
                   {k: tuple(v.shape) for k, v in state.items()}, origin, label)  # fmt: skip
    check_values(state, expected, origin)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
