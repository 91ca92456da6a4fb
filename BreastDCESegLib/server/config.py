"""Settings of ``breastdceseg serve``: token, device, workers, queue and upload limits.

Usage::

    config = ServerConfig(token=read_token("/etc/breastdceseg/token"), work_dir=Path("/var/lib/bdseg"),
                          device="cuda", workers=2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import BadInputError

MIN_TOKEN_CHARS = 16
MiB = 1 << 20


@dataclass
class Limits:
    """What one submitted study may be; anything beyond is refused before inference.

    Attributes:
        max_upload_bytes: size of the whole HTTP request body (413 beyond).
        max_phase_files: NRRD/NIfTI phase files per study.
        max_zip_members: files in a DICOM zip.
        max_decompressed_bytes: total uncompressed size of a DICOM zip.
        max_compression_ratio: uncompressed/compressed size of one zip member (zip bombs).
        max_dimension: voxels along any axis of a phase.
        max_voxels: voxels of one phase.
    """

    max_upload_bytes: int = 2048 * MiB
    max_phase_files: int = 12
    max_zip_members: int = 10000
    max_decompressed_bytes: int = 4096 * MiB
    max_compression_ratio: float = 200.0
    max_dimension: int = 2048
    max_voxels: int = 1024 * 1024 * 512


@dataclass
class ServerConfig:
    """Everything the app needs; built by :func:`BreastDCESegLib.server.main.build_config`.

    Attributes:
        token: the bearer token every route but ``/v1/health`` requires.
        work_dir: job directories live in ``work_dir/jobs/<job id>``.
        device: device of every job ("auto", "cpu", "cuda", "cuda:1"); clients cannot change it.
        workers: warm worker processes (jobs running at the same time).
        max_queue: jobs waiting for a worker; one more is answered 503 with Retry-After.
        job_ttl_s: a finished job's directory is deleted this long after it finished (or when
            the client deletes the job after fetching its outputs).
        retry_after_s: the Retry-After of a 503.
        python: interpreter of the workers (default: this one).
        allow_debug_options: accept the worker's ``debug_sleep_*`` test options.
    """

    token: str
    work_dir: Path
    device: str = "auto"
    workers: int = 1
    max_queue: int = 16
    job_ttl_s: float = 3600.0
    retry_after_s: int = 15
    python: Optional[str] = None
    allow_debug_options: bool = False
    limits: Limits = field(default_factory=Limits)


def read_token(path: str | Path) -> str:
    """The token in ``path`` (first line, stripped).

    Raises:
        BadInputError: the file is missing, or the token is shorter than 16 characters.
    """
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read a token from {path} ({exc}); write one line, e.g. "
                            "`python -c \"import secrets; print(secrets.token_urlsafe(32))\" > token`.") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise BadInputError(f"The token in {path} has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                            "(e.g. secrets.token_urlsafe(32)).")
    return token
