"""Turn a submitted multipart form into a checked job directory with a ``request.json``.

The form has either ``phases`` (two or more NRRD/NIfTI files, pre-contrast first) or
``dicom_zip`` (one zip of the study's DICOM files), and ``params``, a JSON object::

    {"model": "kinetic", "times": [0, 90, 180] | null, "case_id": "case1", "options": {}}

The device is the server's (``--device``), whatever the client asks. Runs in a thread pool
(file copies, header reads, a DICOM study read).

Usage::

    prepare_job(form, job, config)     # raises UploadRejected (4xx) for a refused study
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import BreastDCESegError
from .config import ServerConfig
from .uploads import UploadRejected, check_phase_headers, copy_limited, extract_dicom_zip, save_phase_files

DEBUG_OPTIONS = ("debug_sleep_s", "debug_sleep_at")
IGNORED_OPTIONS = ("overwrite",)

SUBMIT_OPENAPI: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["params"],
    "properties": {
        "phases": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "one NRRD (.nrrd) or NIfTI (.nii, .nii.gz) file per phase, pre-contrast first"},
        "dicom_zip": {"type": "string", "format": "binary",
                      "description": "instead of phases: a zip of the DICOM files of one study"},
        "params": {"type": "string", "description": 'JSON: {"model": id or null, "times": [seconds] or null, '
                                                    '"case_id": str, "options": {...}}'},
    }}}}}}


def _params(form, config: ServerConfig) -> dict[str, Any]:
    raw = form.get("params") or "{}"
    if not isinstance(raw, str):
        raise UploadRejected(422, "The 'params' field must be a JSON text, not a file.")
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UploadRejected(422, f"The 'params' field is not valid JSON ({exc.msg}).") from None
    if not isinstance(params, dict):
        raise UploadRejected(422, "The 'params' field must be a JSON object.")
    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise UploadRejected(422, "params.options must be a JSON object.")
    debug = [k for k in options if k in DEBUG_OPTIONS]
    if debug and not config.allow_debug_options:
        raise UploadRejected(422, f"Option(s) {', '.join(debug)} are testing aids this server does not accept.")
    params["options"] = {k: v for k, v in options.items() if k not in IGNORED_OPTIONS}
    params["model"] = _model(params.get("model"))
    case_id = str(params.get("case_id") or "study")
    params["case_id"] = re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)[:64] or "study"
    return params


def _model(model: Any) -> Any:
    from ..models.registry import load_registry

    if model is None or model == "kinetic":
        return model
    registry = load_registry()
    if not isinstance(model, str) or model not in registry:
        raise UploadRejected(422, f"Unknown model {str(model)[:60]!r}; this server has: {', '.join(registry.ids())} "
                                  "(GET /v1/models).")
    return model


def _uploads(form, name: str) -> list:
    items = form.getlist(name)
    if any(isinstance(item, str) for item in items):
        raise UploadRejected(422, f"The '{name}' field must hold files.")
    return items


def _dicom_to_phases(form, job, config: ServerConfig) -> list[str]:
    """Extract the DICOM zip, read the study, write its phases as uncompressed NRRD in inputs/."""
    from ..io import read_study
    from ..io.files import write_study_phases

    upload = _uploads(form, "dicom_zip")
    if len(upload) != 1:
        raise UploadRejected(422, "Send exactly one 'dicom_zip' file.")
    zip_path = job.dir / "upload.zip"
    upload[0].file.seek(0)
    copy_limited(upload[0].file, zip_path, config.limits.max_upload_bytes, "The DICOM zip")
    folder = extract_dicom_zip(zip_path, job.dir / "dicom", config.limits)
    try:
        study = read_study(folder, case_id="study")
    except BreastDCESegError as exc:
        message = str(exc).replace(str(folder), "the zip").replace(str(job.dir), "the upload")
        raise UploadRejected(422, f"The DICOM files do not make a DCE study: {message}") from None
    finally:
        zip_path.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
    size = list(study.size)
    limits = config.limits
    if max(size) > limits.max_dimension or size[0] * size[1] * size[2] > limits.max_voxels:
        raise UploadRejected(413, f"The study has size {size}; the server accepts at most {limits.max_dimension} "
                                  "voxels per axis.")
    paths = write_study_phases(study, job.dir / "inputs", ext=".nrrd", case_id="phase", compress=False)
    return [f"inputs/{Path(p).name}" for p in paths]


def prepare_job(form, job, config: ServerConfig) -> None:
    """Check the form, save the study into ``job.dir`` and write ``job.dir/request.json``.

    Raises:
        UploadRejected: the study is refused (status and message for the client).
    """
    params = _params(form, config)
    phases, dicom = _uploads(form, "phases"), form.getlist("dicom_zip")
    if bool(phases) == bool(dicom):
        raise UploadRejected(422, "Send either 'phases' (one NRRD/NIfTI file per phase) or one 'dicom_zip'.")
    if phases:
        for item in phases:
            item.file.seek(0)
        paths = save_phase_files([(item.filename or "", item.file) for item in phases], job.dir / "inputs",
                                 config.limits)
        check_phase_headers(paths, config.limits)
        names = [f"inputs/{p.name}" for p in paths]
    else:
        names = _dicom_to_phases(form, job, config)
    times = params.get("times")
    if times is not None and (not isinstance(times, list) or len(times) != len(names)
                              or not all(t is None or isinstance(t, (int, float)) for t in times)):
        raise UploadRejected(422, f"params.times must be null or a list of {len(names)} numbers (seconds after "
                                  "injection, null when unknown), one per phase.")
    request = {"phases": names, "times": times, "case_id": params["case_id"], "model": params["model"],
               "device": config.device, "output_dir": "out", "options": params["options"]}
    (job.dir / "request.json").write_text(json.dumps(request), encoding="utf-8")
