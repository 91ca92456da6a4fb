"""Where model weights may come from, and how much of them is read.

A registry entry names its weights by a path or a URL with their SHA-256 and size in
bytes. Before anything is hashed or loaded:

* a URL must be ``http`` or ``https`` (no ``file:``, ``ftp:``... : ``file:///dev/zero``
  would fill the disk);
* a path must lie inside the folder of the registry file that names it, or inside the
  user's model folder (the folder of the user registry, where ``models import`` and
  ``train --register`` put weights): ``../../etc/passwd`` is refused;
* a local file's size must equal the declared ``bytes`` (checked before hashing);
* a download stops as soon as it exceeds the declared ``bytes`` (and a server announcing a
  larger ``Content-Length`` is refused before reading), then its SHA-256 must match.

Usage::

    from BreastDCESegLib.models.weights_source import check_local_path, download_capped
    path = check_local_path(spec)                 # ModelError when outside the allowed folders
    verify_size(path, spec.bytes, spec.id)        # ModelError when the size differs
    path = download_capped(url, sha256, size, cache)
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from ..errors import ModelError

URL_SCHEMES = ("http", "https")
CHUNK = 1 << 20


def is_url(location: Optional[str]) -> bool:
    """True for anything with a URL scheme (drive letters of Windows paths are not schemes)."""
    scheme = urllib.parse.urlparse(location or "").scheme
    return len(scheme) > 1


def check_url(url: str, model_id: str) -> str:
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise ModelError(f"Weights of model {model_id!r} are at {url!r}: only http(s) URLs are accepted "
                         f"({scheme}: refused). Download the file yourself and put it next to the registry, or "
                         "use `breastdceseg models import`.")
    return url


def allowed_folders(registry_folder: Optional[str | Path]) -> list[Path]:
    """The registry's own folder and the user's model folder (resolved)."""
    from .registry import user_registry_path

    folders = [user_registry_path().expanduser().parent]
    if registry_folder:
        folders.insert(0, Path(registry_folder))
    return [f.resolve() for f in folders]


def check_local_path(path: str | Path, registry_folder: Optional[str | Path], model_id: str) -> Path:
    """``path`` (resolved, links followed) when it lies inside an allowed folder; else ModelError."""
    resolved = Path(path).expanduser().resolve()
    folders = allowed_folders(registry_folder)
    if not any(resolved == f or f in resolved.parents for f in folders):
        raise ModelError(f"Weights path {path} of model {model_id!r} is outside its registry folder "
                         f"({', '.join(str(f) for f in folders)}); refused. Put the weights file next to the "
                         "registry (or use `breastdceseg models import`) and name it relative to it.")
    return resolved


def verify_size(path: Path, expected: Optional[int], model_id: str) -> None:
    """ModelError when ``path``'s size differs from the declared ``bytes`` (no hashing needed)."""
    if expected is None:
        return
    size = path.stat().st_size
    if size != int(expected):
        raise ModelError(f"Weights file {path} of model {model_id!r} has {size} bytes, but the registry declares "
                         f"{int(expected)}; it was not read. The file is damaged, truncated or another version.")


def download_capped(url: str, sha256: str, size: Optional[int], final: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``final`` reading at most ``size`` bytes; checksum before keeping it."""
    from .registry import sha256_file

    partial = final.with_name(final.name + f".part{os.getpid()}")
    limit = None if size is None else int(size)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            announced = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            if limit is not None and announced and announced.isdigit() and int(announced) > limit:
                raise ModelError(f"{url} announces {int(announced)} bytes but the registry declares {limit}; "
                                 "not downloaded. The URL may point to another file.")
            received = 0
            while True:
                block = response.read(CHUNK if limit is None else min(CHUNK, limit - received + 1))
                if not block:
                    break
                received += len(block)
                if limit is not None and received > limit:
                    raise ModelError(f"The download from {url} exceeds the {limit} bytes the registry declares; "
                                     "stopped and not kept. The URL may point to another file.")
                out.write(block)
    except ModelError:
        partial.unlink(missing_ok=True)
        raise
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(f"Could not download model weights from {url}: {exc}. Check the network, or "
                         f"download the file yourself and put its path in the registry entry.") from exc
    if limit is not None and received != limit:
        partial.unlink(missing_ok=True)
        raise ModelError(f"The download from {url} has {received} bytes, but the registry declares {limit}; "
                         "not kept.")
    actual = sha256_file(partial)
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise ModelError(f"The weights downloaded from {url} have SHA-256 {actual}, but the registry expects "
                         f"{sha256}; the file was not kept. The URL may point to another version.")
    os.replace(partial, final)
    return final
