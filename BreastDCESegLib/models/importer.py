"""``breastdceseg models import``: add a model someone downloaded to the user registry, safely.

:func:`import_model` takes a weights file, a folder or a zip and

1. reads every weights file with ``torch.load(weights_only=True)`` (or safetensors),
   allowing only the globals its format needs (none for a plain state dict; numpy scalars
   for nnU-Net checkpoints: :func:`models.nnunet.checkpoint_globals`); anything else is
   refused naming the file and what it would have run, and nothing in it is executed;
2. loads the state dict with ``strict=True`` into the family's network (``zhang2023``: the
   published or tiny ``TranRUnet``; ``nnunet``: the network ``plans.json`` describes, every
   fold; a trainable family: its small or paper configuration);
3. copies the files into the user model folder (``<user registry folder>/models/<id>/``),
   records each file's SHA-256 and size (a folder also gets one SHA-256 over its
   manifest), and adds the entry (``origin: "imported"``, ``demo: false``, licence and
   source as given) to the user registry. An existing id is replaced only with
   ``replace=True``; a shipped placeholder (an entry with ``needs_import``) is filled in.

At run time :func:`models.registry.resolve_weights` checks the checksums again
(:func:`verify_folder` for a folder): a file changed after the import is refused.

Usage::

    from BreastDCESegLib.models.importer import import_model
    entry = import_model("best_model.pth", "zhang2023", "zhang2023-patterns", source="authors' Google Drive")
    entry = import_model("Dataset101.zip", "nnunet", "mamamia-nnunet", licence="CC BY-NC 4.0", channels=[1])
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import ModelError
from ..io.atomic import write_json

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
IMPORTED_USE = "research use only; imported by the user, not validated here; not a medical device"


# ----------------------------------------------------------------------------- safe reading, checksums
def safe_torch_load(path: os.PathLike | str, allowed: Sequence = (), what: str = "a weights file") -> Any:
    """``torch.load(path, weights_only=True)`` with only ``allowed`` extra globals.

    Raises :class:`ModelError` naming the file and the globals it would need when it holds
    anything else (such a file is never unpickled), or when it is not a torch file at all.
    """
    import pickle

    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # noqa: BLE001 - naming them is a courtesy
            needed = []
        names = ", ".join(needed) or str(exc).splitlines()[-1][:200]
        raise ModelError(f"{path} is refused: loading it would run Python code or build objects that {what} "
                         f"does not contain ({names}). Nothing in it was executed. Use the file as its authors "
                         "published it, or re-save its state dict with safetensors.") from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelError(f"{path} could not be read as {what}: {str(exc).splitlines()[0]}") from exc


def file_records(root: Path, files: Sequence[Path]) -> list[dict]:
    """``[{"path", "sha256", "bytes"}]`` of ``files`` (relative to ``root``)."""
    from .registry import sha256_file

    return [{"path": Path(f).as_posix(), "sha256": sha256_file(root / f), "bytes": (root / f).stat().st_size}
            for f in files]


def manifest_sha256(records: Sequence[dict]) -> str:
    """One SHA-256 over a folder's manifest (path, SHA-256 and size of every file)."""
    text = "".join(f"{r['sha256']}  {r['bytes']}  {r['path']}\n" for r in sorted(records, key=lambda r: r["path"]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_folder(spec, root: Path) -> Path:
    """Check every file of a folder model against its registry manifest; returns ``root``."""
    from .registry import sha256_file

    records = (spec.entry.get("weights") or {}).get("files") or []
    if not records or manifest_sha256(records) != spec.sha256:
        raise ModelError(f"The registry entry of {spec.id!r} ({spec.source}) has no valid file manifest for the folder "
                         f"{root}; import the model again (breastdceseg models import ... --replace).")
    for record in records:
        path = root / record["path"]
        if not path.is_file():
            raise ModelError(f"File {path} of model {spec.id!r} is missing; import the model again.")
        actual = sha256_file(path)
        if actual != record["sha256"]:
            raise ModelError(f"File {path} of model {spec.id!r} has SHA-256 {actual}, but the registry expects "
                             f"{record['sha256']}. The file is damaged or was replaced; it was not loaded. "
                             "Restore it or import the model again.")
    return root


# ----------------------------------------------------------------------------- family checks
def _single_weights_file(source: Path) -> Path:
    if source.is_file():
        return source
    found = [p for p in sorted(source.rglob("*")) if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    if len(found) != 1:
        raise ModelError(f"{source} holds {len(found)} weights files ({', '.join(p.name for p in found[:5])}); "
                         "give the one to import.")
    return found[0]


def _mismatch(state: dict, expected: dict) -> str:
    """What differs between a state dict and the network's (missing, unexpected keys, shapes)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    return "; ".join(f"{name}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                     for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                     if items)


def _fit_configs(state: dict, family: str, config: Optional[str]) -> str:
    """The first configuration of ``family`` whose network ``state`` loads into strictly.

    Key names and shapes are compared on a network built on the ``meta`` device (no memory,
    so trying the 175 M-parameter configuration costs nothing); the one that matches is then
    built for real and loaded with ``strict=True``.
    """
    import torch

    from . import build_network, family_module

    names = [config] if config else list(family_module(family).CONFIGS)
    reasons = []
    for name in names:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_network(family, name).state_dict().items()}
        reason = _mismatch(state, expected)
        if not reason:
            try:
                if family == "zhang2023":  # the family's own check: TranRUnet, strict=True
                    family_module(family).check_state_dict(state, name)
                else:
                    build_network(family, name).load_state_dict(state, strict=True)
                return name
            except (RuntimeError, ModelError) as exc:
                reason = str(exc).splitlines()[0]
        reasons.append(f"{name}: {reason}")
    raise ModelError(f"The state dict does not fit the {family} network in any configuration "
                     f"({' | '.join(reasons)}).")


def check_network_file(path: Path, family: str, config: Optional[str] = None) -> str:
    """Read ``path`` safely and load it strictly into ``family``; returns the configuration it fits."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = dict(load_file(str(path)))
    else:
        import torch

        state = safe_torch_load(path, (), f"a {family} checkpoint")
        if isinstance(state, dict):
            for key in ("model", "state_dict"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(f"{path} does not hold a state dict of tensors (found {type(state).__name__}).")
        state = {str(k).removeprefix("module."): v for k, v in state.items()}
    try:
        return _fit_configs(state, family, config)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


# ----------------------------------------------------------------------------- entries
def _template(family: str) -> Optional[dict]:
    """A shipped entry of ``family`` (its preprocessing, tiling and description) to start from."""
    from .registry import DEFAULT_PATH

    document = json.loads(Path(DEFAULT_PATH).read_text(encoding="utf-8"))
    same = [e for e in document["models"] if e["family"] == family]
    return dict(next((e for e in same if "needs_import" in e), same[0])) if same else None


def _nnunet_entry(folder, info: dict, channels: list[int], scheme: str) -> dict:
    from .nnunet import SCHEMES

    return {
        "family": "nnunet", "config": info["configuration"], "task": "tumor",
        "description": (f"nnU-Net v2 results folder ({info['trainer']}, {info['configuration']}, folds "
                        f"{', '.join(folder.folds)}; {info['parameters']:,} parameters) run through nnunetv2's "
                        f"predictor; input channels {folder.channel_names} = phases {channels}; preprocessing "
                        f"scheme {scheme!r}."),
        "inputs": {"min_phases": max(2, max(channels) + 1), "non_contrast": all(c == 0 for c in channels)},
        "preprocessing": dict(SCHEMES[scheme]), "patch_size": info["patch_size"], "overlap": 0.5,
        "nnunet": {"channels": channels, "folds": list(folder.folds), "checkpoint": folder.checkpoint,
                   "configuration": info["configuration"], "trainer": info["trainer"], "scheme": scheme,
                   "channel_names": folder.channel_names},
        "training_data": str(folder.dataset.get("name") or folder.plans.get("dataset_name") or ""),
    }


def _read_user(path: Path) -> dict:
    if not path.exists():
        return {"models": []}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"The user registry {path} is not valid JSON ({exc}); fix or move it first.") from exc


def _unpack(source: Path, workdir: Path) -> Path:
    """A zip extracted under ``workdir`` (no absolute or ``..`` member paths); others as they are.

    A file ``torch.save`` wrote is itself a zip (``<name>/data.pkl``): it is a weights file.
    """
    if not (source.is_file() and zipfile.is_zipfile(source)):
        return source
    target = workdir / "unzipped"
    with zipfile.ZipFile(source) as archive:
        if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in archive.namelist()):
            return source
        for member in archive.infolist():
            name = Path(member.filename)
            if name.is_absolute() or ".." in name.parts:
                raise ModelError(f"{source} contains the unsafe path {member.filename!r}; it was not extracted.")
        archive.extractall(target)
    return target


# ----------------------------------------------------------------------------- import
def import_model(path: os.PathLike | str, family: str, model_id: str, title: Optional[str] = None,
                 licence: Optional[str] = None, source: Optional[str] = None, config: Optional[str] = None,
                 channels: Optional[Sequence[int]] = None, scheme: str = "mamamia", replace: bool = False,
                 registry_json: Optional[os.PathLike | str] = None) -> dict:
    """Check, copy and register a downloaded model; returns the registry entry written.

    Args:
        path: a weights file, a folder (an nnU-Net results folder or one holding one weights
            file) or a zip of either.
        family: ``zhang2023``, ``nnunet`` or a trainable family with a shipped entry (``resunet``...).
        model_id: the registry id (lower case letters, digits, ``.``, ``_``, ``-``).
        config: the family configuration (default: the first one the weights fit).
        channels: nnU-Net only: DCE phase per input channel (default: from dataset.json).
        scheme: nnU-Net only: preprocessing scheme of :data:`models.nnunet.SCHEMES`.
        replace: replace an existing entry (and its folder) with the same id.
        registry_json: the user registry (default ``user_registry_path()``).

    Raises:
        ModelError: unsafe or unfitting weights, an id in use, a bad path; nothing is left behind.
    """
    from .registry import load_registry, user_registry_path, validate

    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path} does not exist; give the downloaded weights file, results folder or zip.")
    if not ID_PATTERN.match(model_id):
        raise ModelError(f"Model id {model_id!r} is not valid: use lower-case letters, digits, '.', '_' or '-'.")
    registry_path = Path(registry_json).expanduser() if registry_json else user_registry_path()
    user = _read_user(registry_path)
    existing = load_registry(user_path=registry_path).specs.get(model_id)
    if existing is not None and not replace and "needs_import" not in existing.entry:
        raise ModelError(f"A model with id {model_id!r} already exists ({existing.source}); choose another --id "
                         "or pass --replace to replace it.")
    models_dir = registry_path.parent / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model_id}.", dir=str(models_dir)) as work:
        work = Path(work)
        source_root = _unpack(path, work)
        if family == "nnunet":
            from . import nnunet

            nnunet.require_nnunetv2()
            folder = nnunet.read_results_folder(source_root)
            info = nnunet.check_folder(folder)
            phases = [int(c) for c in channels] if channels else nnunet.phases_from_channel_names(folder.channel_names)
            if len(phases) != len(folder.channel_names):
                raise ModelError(f"--channels gives {len(phases)} phase(s) but the model has "
                                 f"{len(folder.channel_names)} input channel(s) {folder.channel_names}.")
            if scheme not in nnunet.SCHEMES:
                raise ModelError(f"Unknown preprocessing scheme {scheme!r}; choose one of {', '.join(nnunet.SCHEMES)}.")
            entry = _nnunet_entry(folder, info, phases, scheme)
            src_root, files = folder.root, folder.files()
        else:
            template = _template(family)
            if template is None:
                raise ModelError(f"Importing family {family!r} is not supported (no registry entry to start from); "
                                 "import zhang2023, nnunet, or a family with a shipped entry (resunet...).")
            weights_file = _single_weights_file(source_root)
            fitted = check_network_file(weights_file, family, config)
            entry = {k: v for k, v in template.items() if k not in ("needs_import", "training", "id")}
            entry["config"] = fitted
            src_root, files = weights_file.parent, [Path(weights_file.name)]
        staged = work / "staged"
        for f in files:
            (staged / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_root / f, staged / f)
        records = file_records(staged, files)
        if family == "nnunet":
            weights = {"path": f"models/{model_id}", "sha256": manifest_sha256(records),
                       "bytes": sum(r["bytes"] for r in records), "format": "nnunet", "files": records}
        else:
            record = records[0]
            weights = {"path": f"models/{model_id}/{record['path']}", "sha256": record["sha256"],
                       "bytes": record["bytes"], "format": "safetensors" if record["path"].endswith(".safetensors")
                       else "torch"}
        entry.update({
            "id": model_id, "version": "1", "weights": weights, "demo": False, "origin": "imported",
            "title": title or (entry.get("title", "").replace(" (needs import)", "") if "title" in entry
                               else f"{model_id} (imported nnU-Net model)"),
            "licence": licence or entry.get("licence") or "as published by the model's authors (not recorded)",
            "source": source or str(path), "intended_use": entry.get("intended_use") if family == "zhang2023"
            else IMPORTED_USE, "training": None,
            "seconds_per_case": {"cpu": None, "gpu": None}, "description": entry.get("description", ""),
        })
        entry.setdefault("training_data", "")
        validate({"models": [entry]}, f"entry {model_id}")
        target = models_dir / model_id
        previous = work / "previous"
        if target.exists():
            os.replace(target, previous)
        os.replace(staged, target)
        user["models"] = [m for m in user.get("models", []) if m.get("id") != model_id] + [entry]
        try:
            validate(user, str(registry_path))
            write_json(registry_path, user)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if previous.exists():
                os.replace(previous, target)
            raise
    return entry


def origin(spec) -> str:
    """Where a registry entry comes from: ``shipped``, ``imported`` or ``user`` (trained, hand-written)."""
    if spec.entry.get("origin"):
        return str(spec.entry["origin"])
    from .registry import DEFAULT_PATH

    return "shipped" if Path(spec.source or "") == Path(DEFAULT_PATH).parent else "user"


# ----------------------------------------------------------------------------- command line
def add_import_arguments(p) -> None:
    """The options of ``breastdceseg models import``."""
    p.add_argument("path", help="the downloaded weights file, nnU-Net results folder, or a zip of either")
    p.add_argument("--family", required=True, help="zhang2023, nnunet, or a trainable family (resunet...)")
    p.add_argument("--id", required=True, dest="model_id", help="registry id, e.g. zhang2023-patterns")
    p.add_argument("--title", default=None, help="title shown in the model lists")
    p.add_argument("--licence", default=None, help="the weights' licence as published (e.g. 'CC BY-NC 4.0')")
    p.add_argument("--source", default=None, help="where the weights came from (URL); default: the path given")
    p.add_argument("--config", default=None, help="network configuration (default: the first that fits)")
    p.add_argument("--channels", default=None, help="nnunet: DCE phase per input channel, e.g. 1 or 0,1 "
                                                    "(0 = pre-contrast; default: from dataset.json)")
    p.add_argument("--scheme", default="mamamia", help="nnunet preprocessing: mamamia (1 mm, joint z-score over "
                                                       "all phases) or native")
    p.add_argument("--replace", action="store_true", help="replace an existing model with the same id")
    p.add_argument("--registry", default=None, help="user registry JSON (default: ~/.config/breastdceseg/models.json)")


def import_main(args) -> int:
    """``breastdceseg models import``: import, then print what was recorded."""
    try:
        channels = [int(c) for c in args.channels.replace(" ", "").split(",")] if args.channels else None
    except ValueError:
        raise ModelError(f"--channels takes phase numbers separated by commas (0 = pre-contrast), e.g. 1 or 0,1; "
                         f"got {args.channels!r}.") from None
    entry = import_model(args.path, args.family, args.model_id, title=args.title, licence=args.licence,
                         source=args.source, config=args.config, channels=channels, scheme=args.scheme,
                         replace=args.replace, registry_json=args.registry)
    from .registry import user_registry_path

    weights = entry["weights"]
    print(f"imported {entry['id']} ({entry['family']}, config {entry.get('config')}): {weights['bytes']:,} bytes, "
          f"SHA-256 {weights['sha256']}; registry {Path(args.registry or user_registry_path())}")
    print(f"run it: breastdceseg segment --input STUDY --output OUT --model {entry['id']}")
    return 0
