"""The model registry: ``BreastDCESegLib/models/shipped/models.json`` (package data) plus the user's own models.

Every entry says what a model needs (phases, contrast), how its input is prepared
(spacing, normalisation), how it is run (patch size, overlap), where its weights are
(a file next to the JSON or a URL, with SHA-256 and size) and how it was made. Weights
are checked against their SHA-256 *before* anything reads them and are loaded with
safetensors, or ``torch.load(weights_only=True)``; nothing in a weights file is executed.

Usage::

    from BreastDCESegLib.models.registry import load_registry, load_weights, format_model_table
    registry = load_registry()                 # env BREASTDCESEG_MODELS overrides the path
    spec = registry.get(registry.default_id)   # ModelSpec; unknown id -> ModelError
    net = load_weights(spec, "cpu")            # checksum, then safetensors -> nn.Module (eval)
    print(format_model_table(registry))

User models: a second JSON file with the same layout (``{"models": [...]}``, optional
``"default"``), at ``$BREASTDCESEG_USER_MODELS`` or ``~/.config/breastdceseg/models.json``;
its entries are added to (or replace, by id) the shipped ones, its weight paths are
relative to that file. Downloaded weights go to ``$BREASTDCESEG_CACHE`` or
``~/.cache/breastdceseg``.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import MissingDependencyError, ModelError

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_PATH = SHIPPED_DIR / "models.json"
SCHEMA_NAME = "models.schema.json"
DEMO_USE = "trained on synthetic phantoms — not for clinical use"


def default_registry_path() -> Path:
    return Path(os.environ.get("BREASTDCESEG_MODELS") or DEFAULT_PATH)


def user_registry_path() -> Path:
    env = os.environ.get("BREASTDCESEG_USER_MODELS")
    return Path(env) if env else Path.home() / ".config" / "breastdceseg" / "models.json"


def cache_dir() -> Path:
    env = os.environ.get("BREASTDCESEG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "breastdceseg"


def schema_path(registry_path: Optional[Path] = None) -> Path:
    """The schema next to the registry file, else the shipped one."""
    if registry_path is not None and (Path(registry_path).parent / SCHEMA_NAME).exists():
        return Path(registry_path).parent / SCHEMA_NAME
    return DEFAULT_PATH.parent / SCHEMA_NAME


def validate(document: dict, where: str = "registry", schema_file: Optional[Path] = None) -> None:
    """Validate a registry document (or ``{"models": [entry]}``) against the JSON schema."""
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - jsonschema is a declared dependency
        raise MissingDependencyError("validating the model registry needs jsonschema (pip install jsonschema)") from exc
    schema = json.loads(Path(schema_file or schema_path()).read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'/'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in errors[:8]]
        raise ModelError(f"The model registry {where} does not follow {SCHEMA_NAME}:\n" + "\n".join(lines)
                         + "\nFix the entries listed above.")


@dataclass
class ModelSpec:
    """One registry entry, with its weights location resolved against the JSON file."""

    id: str
    family: str
    title: str
    version: str = "1"
    description: str = ""
    config: Optional[str] = None
    task: str = "tumor"
    min_phases: int = 2
    non_contrast: bool = False
    spacing: Optional[tuple[float, float, float]] = None
    normalization: str = "patterns_minmax"
    patch_size: Optional[tuple[int, int, int]] = None
    overlap: Optional[float] = None
    threshold: float = 0.5
    weights: Optional[str] = None           # absolute path or URL
    sha256: Optional[str] = None
    bytes: Optional[int] = None
    breast_model: Optional[str] = None
    network_overrides: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    training_data: str = ""
    intended_use: str = ""
    demo: bool = False
    training: Optional[dict[str, Any]] = None
    seconds_cpu: Optional[float] = None
    seconds_gpu: Optional[float] = None
    source: Optional[str] = None            # the JSON file the entry came from
    entry: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_kinetic(self) -> bool:
        return self.family == "kinetic"

    @property
    def needs_import(self) -> Optional[dict[str, Any]]:
        """The entry's ``needs_import`` block (url, command: weights the user downloads from the
        authors and adds with ``breastdceseg models import``) while it has no weights, else None."""
        return self.entry.get("needs_import") if self.weights is None else None

    @property
    def is_url(self) -> bool:
        """True for any URL (only http(s) ones are then accepted, see :mod:`.weights_source`)."""
        from .weights_source import is_url

        return bool(self.weights) and is_url(self.weights)

    def weights_available(self) -> bool:
        """True when the weights are a local file that exists (a URL counts as available)."""
        if self.weights is None:
            return self.is_kinetic
        return self.is_url or Path(self.weights).exists()

    @classmethod
    def from_entry(cls, entry: dict[str, Any], base: Path, breast_default: Optional[str] = None) -> "ModelSpec":
        weights = entry.get("weights")
        location = None
        if weights:
            location = weights["path"]
            from .weights_source import is_url

            if not is_url(location):
                location = str((base / location).resolve()) if not Path(location).is_absolute() else location
        pre, seconds = entry["preprocessing"], entry.get("seconds_per_case") or {}
        return cls(
            id=entry["id"], family=entry["family"], title=entry["title"], version=str(entry["version"]),
            description=entry.get("description", ""), config=entry.get("config"), task=entry.get("task", "tumor"),
            min_phases=int(entry["inputs"]["min_phases"]), non_contrast=bool(entry["inputs"]["non_contrast"]),
            spacing=None if pre["spacing"] is None else tuple(float(s) for s in pre["spacing"]),
            normalization=pre["normalization"],
            patch_size=None if entry.get("patch_size") is None else tuple(int(s) for s in entry["patch_size"]),
            overlap=entry.get("overlap"), threshold=float(entry.get("threshold", 0.5)),
            weights=location, sha256=weights["sha256"] if weights else None,
            bytes=weights["bytes"] if weights else None,
            breast_model=entry.get("breast_model", breast_default),
            network_overrides=dict(entry.get("network_overrides") or {}),
            licence=entry["licence"], training_data=entry.get("training_data", ""),
            intended_use=entry["intended_use"], demo=bool(entry["demo"]), training=entry.get("training"),
            seconds_cpu=seconds.get("cpu"), seconds_gpu=seconds.get("gpu"), source=str(base), entry=dict(entry))


class Registry:
    """Models by id, the default tumor model and the whole-breast model."""

    def __init__(self, specs: dict[str, ModelSpec], default_id: str, breast_id: Optional[str] = None,
                 path: Optional[Path] = None, sources: Optional[list[str]] = None):
        self.specs = specs
        self.default_id = default_id
        self.breast_id = breast_id
        self.path = path
        self.sources = list(sources or [])

    def get(self, model_id: Optional[str] = None) -> ModelSpec:
        """The entry ``model_id`` (``None`` = the default); unknown ids raise ModelError."""
        model_id = self.default_id if model_id is None else model_id
        if model_id not in self.specs:
            raise ModelError(f"Unknown model {model_id!r}. Valid model ids: {', '.join(self.ids())}. "
                             "Run `breastdceseg models` to see them, or add your own entry to "
                             f"{user_registry_path()}.")
        return self.specs[model_id]

    def ids(self) -> list[str]:
        return list(self.specs)

    def list(self, task: Optional[str] = None) -> list[ModelSpec]:
        return [s for s in self.specs.values() if task is None or s.task == task]

    def breast_spec(self, spec: Optional[ModelSpec] = None) -> Optional[ModelSpec]:
        """The whole-breast model for ``spec`` (its own ``breast_model`` or the registry's)."""
        bid = spec.breast_model if spec is not None and spec.breast_model is not None else self.breast_id
        return self.specs.get(bid) if bid else None

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.specs

    def __len__(self) -> int:
        return len(self.specs)


def _read_document(path: Path) -> dict:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"Model registry {path} not found. Set BREASTDCESEG_MODELS to a models.json "
                         "or reinstall the extension.") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"Model registry {path} is not valid JSON ({exc}); fix or remove the file.") from exc
    validate(document, str(path), schema_path(path))
    return document


def load_registry(path: Optional[os.PathLike | str] = None, user_path: Optional[os.PathLike | str] = None,
                  include_user: bool = True) -> Registry:
    """Read, validate and merge the shipped registry and the user's registry file.

    Args:
        path: the main registry (default ``$BREASTDCESEG_MODELS`` or the shipped models.json).
        user_path: the user's registry (default ``$BREASTDCESEG_USER_MODELS`` or
            ``~/.config/breastdceseg/models.json``); ignored when absent.
        include_user: set False to read only the main file.
    """
    path = Path(path) if path is not None else default_registry_path()
    document = _read_document(path)
    breast = document.get("breast_model")
    specs = {e["id"]: ModelSpec.from_entry(e, path.parent, breast) for e in document["models"]}
    default_id, sources = document.get("default"), [str(path)]
    upath = Path(user_path) if user_path is not None else user_registry_path()
    if include_user and upath.exists() and upath.resolve() != path.resolve():
        user = _read_document(upath)
        breast = user.get("breast_model", breast)
        for entry in user["models"]:
            specs[entry["id"]] = ModelSpec.from_entry(entry, upath.parent, breast)
        default_id = user.get("default", default_id)
        sources.append(str(upath))
    if not default_id or default_id not in specs:
        raise ModelError(f"The registry's default model {default_id!r} is not one of its entries "
                         f"({', '.join(specs)}) in {', '.join(sources)}; set \"default\" to a listed id.")
    if breast is not None and breast not in specs:
        raise ModelError(f"The registry's breast model {breast!r} is not one of its entries in {', '.join(sources)}.")
    return Registry(specs, default_id, breast, path, sources)


# ----------------------------------------------------------------------------- weights
def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, sha256: str, target_dir: Optional[Path] = None, timeout: float = 60.0,
             size: Optional[int] = None, model_id: str = "?") -> Path:
    """Download an http(s) ``url`` into the cache (once), reading at most ``size`` bytes and
    verifying its SHA-256 before keeping it (:mod:`.weights_source`)."""
    from .weights_source import check_url, download_capped

    check_url(url, model_id)
    target_dir = Path(target_dir or cache_dir())
    target_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "weights"
    final = target_dir / f"{sha256[:16]}-{name}"
    if final.exists() and (size is None or final.stat().st_size == size) and sha256_file(final) == sha256:
        return final
    return download_capped(url, sha256, size, final, timeout)


def resolve_weights(spec: ModelSpec) -> Path:
    """A verified local weights file for ``spec`` (downloaded first when it is a URL)."""
    if spec.weights is None and spec.needs_import:
        info = spec.needs_import
        raise ModelError(f"Model {spec.id!r} needs its published weights, which are not shipped: download them "
                         f"from {info['url']} ({info.get('file', 'the checkpoint')}), then run "
                         f"`{info['command']}`.")
    if spec.weights is None:
        raise ModelError(f"Model {spec.id!r} ({spec.family}) has no weights to load.")
    if spec.is_url:
        return download(spec.weights, spec.sha256, size=spec.bytes, model_id=spec.id)
    from .weights_source import check_local_path, verify_size

    path = check_local_path(spec.weights, spec.source, spec.id)  # inside the registry's or the user's folder
    if not path.exists():
        raise ModelError(f"Weights file for model {spec.id!r} not found: {path}. Reinstall the extension, "
                         f"train the model (breastdceseg train), or fix the path in {spec.source}.")
    if path.is_dir():  # an imported folder model (nnU-Net results): every file against its manifest
        from .importer import verify_folder

        return verify_folder(spec, path)
    verify_size(path, spec.bytes, spec.id)  # before hashing: a huge or truncated file is not read
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ModelError(f"Weights file {path} for model {spec.id!r} has SHA-256 {actual}, but the registry "
                         f"expects {spec.sha256}. The file is damaged or was replaced; it was not loaded. "
                         "Restore the original file or update the registry entry.")
    return path


def read_state_dict(path: Path, device: str = "cpu") -> dict:
    """A state dict from safetensors, or from a torch file that holds tensors only."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(device))
    import pickle
    import zipfile

    import torch

    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise ModelError(f"Weights file {path} is not a PyTorch weights file (damaged, or another format); "
                         "save the state dict with safetensors or torch.save.")
    try:
        state = torch.load(str(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"Weights file {path} needs Python code to be executed to load it, which is refused "
                         f"for safety ({str(exc).splitlines()[0]}). Save the state dict with safetensors "
                         "(safetensors.torch.save_file(model.state_dict(), ...)).") from exc
    for key in ("state_dict", "model"):  # training checkpoints keep the network's state under one key
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"Weights file {path} does not hold a state dict (found {type(state).__name__}).")
    return state


def load_weights(spec: ModelSpec, device: str = "cpu"):
    """Build ``spec``'s network and load its verified weights; returns it in eval mode on ``device``."""
    from . import build_network

    path = resolve_weights(spec)
    state = read_state_dict(path, "cpu")
    network = build_network(spec.family, spec.config or "small", **spec.network_overrides)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"Weights {path} do not fit model {spec.id!r} ({spec.family}, config "
                         f"{spec.config!r}): {str(exc).splitlines()[0]}. Check the entry's family and config.") from exc
    return network.to(device).eval()


# ----------------------------------------------------------------------------- listing
def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_model_table(registry: Registry) -> str:
    """The text of ``breastdceseg models``: one row per model, then notes."""
    from ..environment import DEEP_INSTALL, runs_here

    from .importer import origin

    header = ("id", "task", "family", "phases", "weights", "runs here", "origin", "cpu s", "gpu s", "title")
    rows = []
    for spec in registry.list():
        if spec.is_kinetic:
            weights = "none needed"
        elif spec.needs_import:
            weights = "needs import"
        elif spec.is_url:
            weights = "download"
        else:
            weights = "present" if spec.weights_available() else "MISSING"
        phases = f">={spec.min_phases}" + (" pre only" if spec.non_contrast else "")
        mark = "*" if spec.id == registry.default_id else " "
        title = spec.title + (" [demo]" if spec.demo else "")
        rows.append((mark + spec.id, spec.task, spec.family, phases, weights, runs_here(spec), origin(spec),
                     _seconds(spec.seconds_cpu), _seconds(spec.seconds_gpu), title))
    widths = [max(len(str(r[i])) for r in rows + [(" " + header[0],) + header[1:]]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip((" " + header[0],) + header[1:], widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    lines.append(f"* default model: {registry.default_id}"
                 + (f"; whole-breast model: {registry.breast_id}" if registry.breast_id else ""))
    if any(s.demo for s in registry.list()):
        lines.append(f"[demo] weights are {DEMO_USE}.")
    if any(row[5] != "yes" for row in rows):
        lines.append(f"'runs here: needs ...': {DEEP_INSTALL} installs them; the kinetic model needs none"
                     + ("; nnU-Net models need pip install 'breastdceseg[nnunet]'." if any(
                         "nnunetv2" in row[5] for row in rows) else "."))
    lines.append("Registry: " + ", ".join(registry.sources))
    return "\n".join(lines)
