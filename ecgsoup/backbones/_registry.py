"""The registry of backbone families and the one parser of ``model=``.

Families are listed explicitly (no import-time registration); each family
package holds a data-only ``ENTRY`` whose classes and converter are named as
``"module:attr"`` strings and imported only when a model is built.

What ``model=`` accepts, everywhere in ecgsoup:

* ``"default"`` - the bundled pretrained model (``stmem-tiny.ecgsoup-ipa``);
* a registered name (``"hubert-ecg-small"``, ``"ecgfounder-12lead"``,
  ``"stmem-base.original"``) - weights the user downloaded into
  ``$ECGSOUP_MODEL_HOME/<name>/`` (nothing is ever downloaded);
* a path to an ecgsoup model directory (``config.json`` + ``model.safetensors``);
* ``"<family>:<path>"`` - an original third-party file or folder, converted in
  memory (strict key matching, sha256 recorded);
* ``"random:<name>"`` - an untrained model of a registered architecture (seed 0);
* a :class:`~ecgsoup.backbones.Backbone` module, used as is.

Any of the string forms may end in ``@<contract>`` to choose one of the
family's named input contracts, e.g. ``"hubert-ecg:/models/small@benchmark"``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ecgsoup.backbones._base import Backbone, BackboneCard, FamilyEntry, InputContract
from ecgsoup.backbones._checkpoint import WeightsError, load_strict, sha256_file

__all__ = [
    "FAMILY_PACKAGES",
    "LicenceNotice",
    "ModelRef",
    "families",
    "family_entry",
    "parse_model",
    "load_backbone",
    "random_backbone",
    "resolve_contract",
    "registered_names",
    "model_home",
]

FAMILY_PACKAGES = (
    "ecgsoup.backbones.stmem",
    "ecgsoup.backbones.hubert_ecg",
    "ecgsoup.backbones.ecgfounder",
    "ecgsoup.backbones.merl",
    "ecgsoup.backbones.ecg_jepa",
    "ecgsoup.backbones.ecg_fm",
)
DEFAULT_NAME = "stmem-tiny.ecgsoup-ipa"
RANDOM_SEED = 0


class LicenceNotice(UserWarning):
    """The licence of a model's weights, shown once per weights file and process.

    Filter it like any warning: ``warnings.simplefilter("ignore", LicenceNotice)``.
    """


_NOTICED: set = set()


def forget_licence_notices() -> None:
    """Show each model's licence notice again the next time it loads (it is shown once per process)."""
    _NOTICED.clear()


def families() -> dict[str, FamilyEntry]:
    """Every registered family's entry, by family name (imports data only)."""
    out = {}
    for package in FAMILY_PACKAGES:
        entry = importlib.import_module(package).ENTRY
        out[entry.family] = entry
    return out


def family_entry(family: str) -> FamilyEntry:
    entries = families()
    if family not in entries:
        raise ValueError(f"Unknown backbone family {family!r}; known: {', '.join(entries)}.")
    return entries[family]


def _attr(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def model_home() -> Path:
    """Where registered weights are looked for: ``$ECGSOUP_MODEL_HOME`` or ``~/ecgsoup_models``."""
    return Path(os.environ.get("ECGSOUP_MODEL_HOME", "~/ecgsoup_models")).expanduser()


def registered_names() -> dict[str, tuple[str, str, str, str]]:
    """Registered weights: name -> (family, size, file name, download page)."""
    names = {}
    for family, entry in families().items():
        for suffix, size, filename, url in entry.weights:
            names[f"{family}-{suffix}"] = (family, size, filename, url)
    return names


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``model=`` value."""

    kind: str  # "module", "directory", "original", "random"
    family: str | None = None
    path: Path | None = None
    name: str | None = None  # registered or random architecture name
    contract: str | None = None  # named contract chosen with "@<name>"
    module: Backbone | None = None


def _split_contract(text: str) -> tuple[str, str | None]:
    head, sep, tail = text.rpartition("@")
    if not sep or not tail or "/" in tail or os.sep in tail:
        return text, None
    known = {name for entry in families().values() for name in entry.contracts}
    return (head, tail) if tail in known else (text, None)


def parse_model(model) -> ModelRef:
    """Parse any accepted ``model=`` value; the one place that does so."""
    if isinstance(model, Backbone):
        return ModelRef("module", family=model.family, module=model)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a name, a path, '<family>:<path>' or a Backbone module, got {type(model).__name__}."
        )
    text, contract = _split_contract(os.fspath(model))
    entries = families()
    if text == "default" or text == DEFAULT_NAME:
        from ecgsoup.backbones.stmem.weights import default_model_path

        return ModelRef("directory", family="stmem", path=default_model_path(), name=DEFAULT_NAME, contract=contract)
    if text == "random" or text.startswith("random:"):
        return ModelRef("random", name=text.partition(":")[2] or None, contract=contract)
    family, sep, rest = text.partition(":")
    if sep and family in entries:
        if not rest:
            raise ValueError(f"model={text!r} names the family but no file: use '{family}:<path to the weights>'.")
        return ModelRef("original", family=family, path=Path(rest).expanduser(), contract=contract)
    registered = registered_names()
    if text in registered:
        family, _, filename, url = registered[text]
        home = model_home() / text
        if (home / "config.json").exists() and _is_ecgsoup_dir(home):
            return ModelRef("directory", family=family, path=home, name=text, contract=contract)
        if (home / filename).exists():
            return ModelRef("original", family=family, path=home / filename, name=text, contract=contract)
        if home.exists() and family == "hubert-ecg":
            return ModelRef("original", family=family, path=home, name=text, contract=contract)
        raise WeightsError(
            f"model={text!r}: its weights are not in {home}. Download {filename} from {url} into that "
            f"folder (or set ECGSOUP_MODEL_HOME), or pass model='{family}:<path to {filename}>'. "
            "ecgsoup never downloads weights itself."
        )
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file() and path.suffix in (".pth", ".pt", ".ckpt"):
            # A bare checkpoint path has always meant an original ST-MEM file.
            return ModelRef("original", family="stmem", path=path, contract=contract)
        directory = path.parent if path.is_file() else path
        return ModelRef("directory", family=_dir_family(directory), path=directory, contract=contract)
    from ecgsoup.backbones.stmem.config import list_configs

    if text in list_configs():
        raise ValueError(
            f"model={text!r} is a configuration name, not weights. Pass model='random:{text}' for an "
            "untrained encoder of that shape, or a path to pretrained weights."
        )
    raise WeightsError(
        f"No model at {text!r}: not a registered name, not an existing path. Pass 'default', a registered "
        f"name ({', '.join(sorted(registered))}), a model directory, '<family>:<path>' for an original file "
        f"(families: {', '.join(entries)}), or 'random:<name>'. `ecgsoup models` lists them."
    )


def _is_ecgsoup_dir(directory: Path) -> bool:
    import json

    try:
        return json.loads((directory / "config.json").read_text()).get("format") == "ecgsoup-encoder"
    except (OSError, ValueError):
        return False


def _dir_family(directory: Path) -> str:
    import json

    config = directory / "config.json"
    if not config.exists():
        raise WeightsError(
            f"{directory} has no config.json, so it is not an ecgsoup model directory. For an original "
            "file, pass model='<family>:<path>' (families: " + ", ".join(families()) + ")."
        )
    try:
        info = json.loads(config.read_text())
    except ValueError as exc:
        raise WeightsError(f"{config} is not valid JSON ({exc}).") from exc
    if info.get("format") != "ecgsoup-encoder":
        if info.get("model_type", "").startswith("hubert"):
            raise WeightsError(
                f"{directory} is a Hugging Face HuBERT folder, not an ecgsoup model directory: pass "
                f"model='hubert-ecg:{directory}'."
            )
        raise WeightsError(f"{config} is not an ecgsoup model config (format={info.get('format')!r}).")
    return info.get("family", "stmem")


def _contract_of(entry: FamilyEntry, name: str | None, base: InputContract | None) -> InputContract:
    if name is None:
        return base if base is not None else entry.contracts[entry.default_contract]
    if name not in entry.contracts:
        raise ValueError(
            f"The {entry.family} family has no contract {name!r}; known: {', '.join(entry.contracts)}."
        )
    return entry.contracts[name]


def _notice(module: Backbone) -> None:
    card, sha = module.card, module.metadata.get("sha256")
    if card is None or not card.notice or sha is None or sha in _NOTICED:
        return
    _NOTICED.add(sha)
    warnings.warn(
        f"{card.name}: licence {card.license}. {card.notice}", LicenceNotice, stacklevel=3
    )


def random_backbone(name: str | None = None, seed: int = RANDOM_SEED) -> Backbone:
    """An untrained model of a registered architecture, seeded (global RNG untouched).

    ``name`` is a registered name (``"hubert-ecg-small"``), ``"<family>-<size>"``,
    ``"<family>-tiny"`` (a tiny test geometry) or an ST-MEM configuration name.
    """
    import torch

    from ecgsoup.backbones.stmem.config import list_configs
    from ecgsoup.backbones.stmem.weights import random_model

    if name is None or name in list_configs():
        return random_model(name or "ecgsoup-100hz-tiny", seed=seed)
    entries = families()
    registered = registered_names()
    family = size = None
    if name in registered:
        family, size = registered[name][:2]
    else:
        for fam in sorted(entries, key=len, reverse=True):
            if name.startswith(fam + "-"):
                family, size = fam, name[len(fam) + 1:]
                break
    if family is None or family == "stmem":
        return random_model(name, seed=seed)  # raises with the list of configurations
    entry = entries[family]
    if size == "tiny":
        kwargs = entry.tiny
    elif size in entry.sizes:
        kwargs = entry.sizes[size]
    else:
        raise ValueError(
            f"random:{name}: the {family} family has sizes {', '.join([*entry.sizes, 'tiny'])}."
        )
    config = _attr(entry.config)(**kwargs)
    with torch.random.fork_rng(devices=[]):
        module = _attr(entry.module)(config)
    module.init_weights(torch.Generator().manual_seed(int(seed)))
    module.contract = _default_contract_for(entry, config)  # the 1-lead size reads one lead
    module.card = BackboneCard(name=f"random:{name}", family=family, license="none",
                               source=f"untrained, randomly initialised (seed {seed})")
    module.metadata = {"pretrained": False, "source": f"random init, seed {seed}"}
    return module.eval()


def load_backbone(model="default", **options) -> Backbone:
    """Load any accepted ``model=`` value into a frozen backbone module (CPU, eval mode).

    The weights are read strictly (every key and shape must fit; nothing is
    randomly initialised in their place) and their sha256 is recorded in
    ``module.metadata["sha256"]``.  The licence notice is shown once per
    weights file (:class:`LicenceNotice`).

    Parameters
    ----------
    model : str, path or Backbone, default="default"
        See the module documentation for the accepted forms.
    **options
        Passed to the family's converter for original files (e.g. ST-MEM's
        ``sampling_rate`` and ``lead_names``).
    """
    ref = parse_model(model)
    if ref.kind == "module":
        return ref.module
    if ref.kind == "random":
        module = random_backbone(ref.name)
        if ref.contract:
            module.contract = _contract_of(family_entry(module.family), ref.contract, module.contract)
        return module
    if ref.kind == "directory":
        module = _load_directory(ref)
    else:
        module = _load_original(ref, options)
    if ref.contract:
        module.contract = _contract_of(family_entry(module.family), ref.contract, module.contract)
    _notice(module)
    return module


def _load_original(ref: ModelRef, options: dict) -> Backbone:
    import torch

    entry = family_entry(ref.family)
    if not ref.path.exists():
        raise WeightsError(f"No weights at {ref.path} (model='{ref.family}:{ref.path}').")
    if ref.family == "stmem":
        from ecgsoup.backbones.stmem.weights import load_stmem_checkpoint

        return load_stmem_checkpoint(ref.path, **options)
    converted = _attr(entry.convert)(ref.path, **options)
    with torch.random.fork_rng(devices=[]):
        module = _attr(entry.module)(converted.config)
    load_strict(module, converted.state_dict, ref.path, name=f"{entry.family} {type(module).__name__}")
    weights_file = ref.path if ref.path.is_file() else _weights_file_in(ref.path)
    module.metadata = {
        "pretrained": True,
        "source": f"original {entry.family} weights {ref.path.name}",
        "notes": list(converted.notes),
        "sha256": sha256_file(weights_file),
        "path": str(ref.path),
    }
    module.contract = converted.contract or _default_contract_for(entry, converted.config)
    module.card = dataclasses.replace(entry.card, name=ref.name or f"{entry.family}:{ref.path.name}")
    return module.eval()


def _default_contract_for(entry: FamilyEntry, config) -> InputContract:
    """The family's default contract, or the first one whose lead count fits the file (a 1-lead model)."""
    default = entry.contracts[entry.default_contract]
    leads = getattr(config, "in_channels", None)
    if leads is None or leads == default.n_leads:
        return default
    for contract in entry.contracts.values():
        if contract.n_leads == leads and contract.recipe == default.recipe:
            return contract
    for contract in entry.contracts.values():
        if contract.n_leads == leads:
            return contract
    raise WeightsError(f"The {entry.family} family has no input contract for {leads} leads.")


def _weights_file_in(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).exists():
            return directory / name
    raise WeightsError(f"{directory} holds no model.safetensors.")


def _load_directory(ref: ModelRef) -> Backbone:
    if ref.family == "stmem":
        from ecgsoup.backbones.stmem.weights import load_model

        return load_model(ref.path if ref.name != DEFAULT_NAME else "default")
    from ecgsoup.backbones._format import load_directory

    return load_directory(ref.path, family_entry(ref.family))


def resolve_contract(model="default") -> InputContract:
    """The input contract of any ``model=`` value, from configuration only where possible.

    Registered names, directories and ST-MEM configuration names need no
    weights; an original file's default contract comes from its family (an
    original ST-MEM file is read for its window, which only the tensor shapes
    give).
    """
    if isinstance(model, Backbone):
        return model.contract
    from ecgsoup.backbones.stmem.config import EncoderConfig, list_configs
    from ecgsoup.backbones.stmem.model import stmem_contract

    if isinstance(model, EncoderConfig):
        return stmem_contract(model)
    if isinstance(model, str) and (model in list_configs() or model.rsplit("-", 1)[0] in {
            n.rsplit("-", 1)[0] for n in list_configs()}) and not Path(model).exists():
        from ecgsoup.backbones.stmem.config import get_config

        return stmem_contract(get_config(model))
    ref = parse_model(model)
    if ref.kind == "random":
        if ref.name is None or ref.name in list_configs():
            from ecgsoup.backbones.stmem.config import get_config

            return stmem_contract(get_config(ref.name or "ecgsoup-100hz-tiny"))
        return random_backbone(ref.name).contract if ref.contract is None else _contract_of(
            family_entry(random_backbone(ref.name).family), ref.contract, None)
    entry = family_entry(ref.family)
    if ref.family == "stmem":
        from ecgsoup.backbones.stmem.weights import load_config

        base = stmem_contract(load_config(ref.path if ref.name != DEFAULT_NAME else "default"))
        return _contract_of(entry, ref.contract, base)
    if ref.kind == "directory":
        from ecgsoup.backbones._format import CONFIG_FILE, contract_from_info, read_directory_config

        base = contract_from_info(read_directory_config(ref.path), ref.path / CONFIG_FILE)
        return _contract_of(entry, ref.contract, base)
    if ref.contract is None and ref.name in registered_names():
        # A registered size settles the lead count (ECGFounder's 1-lead model) without reading weights.
        size = registered_names()[ref.name][1]
        leads = entry.sizes.get(size, {}).get("in_channels")
        if leads is not None:
            return _default_contract_for(entry, type("Size", (), {"in_channels": leads}))
    return _contract_of(entry, ref.contract, None)


def random_twin(module: Backbone, seed: int = RANDOM_SEED) -> Backbone:
    """An untrained model of ``module``'s architecture and contract, seeded: the random-weights baseline."""
    import torch

    if module.family == "stmem":
        from ecgsoup.backbones.stmem.weights import random_model

        return random_model(module.config, seed=seed)
    with torch.random.fork_rng(devices=[]):
        twin = type(module)(module.config)
    twin.init_weights(torch.Generator().manual_seed(int(seed)))
    twin.contract = module.contract
    twin.card = BackboneCard(name=f"random twin of {module.card.name if module.card else module.family}",
                             family=module.family, license="none",
                             source=f"untrained, randomly initialised (seed {seed})")
    twin.metadata = {"pretrained": False, "source": f"random init, seed {seed}"}
    return twin.eval()
