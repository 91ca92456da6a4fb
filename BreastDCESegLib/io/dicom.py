"""Read a DCE study from a DICOM folder (pydicom for headers, SimpleITK for pixels).

Accepted: one series per phase, or one dynamic series holding every phase (split by
TemporalPositionIdentifier, TriggerTime, AcquisitionNumber, AcquisitionTime or ContentTime),
single-frame or Enhanced/Legacy-Converted multi-frame MR (see ``dicomenhanced``), in any
orientation (slices sorted along the normal of ImageOrientationPatient). Non-DICOM
files and DICOMDIR are ignored; localizers, derived series (subtractions, MIPs) and other
objects (SEG, SR, presentation states) are skipped with a warning.

Phase order: the first of TriggerTime, acquisition clock time, ContentTime,
TemporalPositionIdentifier, SeriesTime, series-description hints (``pre``, ``post2``,
``ph3``) and SeriesNumber that is known and distinct for every phase.

Values: RescaleSlope/Intercept applied per slice; Philips images carrying the private MR scale
slope are read as its floating-point values, so that phases exported as separate series share one
scale (``vendorscale``; ``metadata["vendor_scale"]``).

Times (seconds) follow one convention: with ContrastBolusStartTime, seconds after the
injection (the pre-contrast phase may be negative); otherwise seconds after the start of
the pre-contrast phase (pre = 0), from TriggerTime or the acquisition clock; ``None`` when
neither is known.

Usage::

    from BreastDCESegLib.io.dicom import read_dicom_study, write_dicom_study
    study = read_dicom_study("dicom/case1")
    study.metadata["series_descriptions"]      # ['DCE pre', 'DCE post1', ...]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from ..errors import BadInputError
from ..study import DCEStudy
from . import vendorscale
from .dicomenhanced import frame_headers, is_multiframe, read_frames
from .dicomtime import _clock, _float, _seconds_of_day, acquisition_clock, description_rank  # noqa: F401
from .dicomwrite import MR_IMAGE_STORAGE, write_dicom_study  # noqa: F401  (the io contract names it here)

log = logging.getLogger(__name__)

NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "PR", "SR", "KO", "REG", "DOC", "OT_REPORT"}
DERIVED_WORDS = ("SUBTRACT", "SUB", "MIP", "PROJECTION IMAGE", "MPR", "REFORMATTED", "ADC", "MAP")
MR_IMAGE_CLASSES = {MR_IMAGE_STORAGE, MR_IMAGE_STORAGE + ".1", MR_IMAGE_STORAGE + ".3", MR_IMAGE_STORAGE + ".4"}
SPLIT_KEYS = ("TemporalPositionIdentifier", "TriggerTime", "AcquisitionNumber", "AcquisitionTime", "ContentTime")


@dataclass
class DicomSlice:
    path: Path
    ds: Any
    position: np.ndarray
    normal: np.ndarray
    frame: Optional[int] = None  # frame index in a multi-frame (enhanced) file

    @property
    def distance(self) -> float:
        return float(np.dot(self.position, self.normal))

    def get(self, keyword: str) -> Any:
        value = getattr(self.ds, keyword, None)
        return None if value in (None, "") else value


@dataclass
class DicomVolume:
    """One phase: the slices of one 3-D volume in order along the slice normal."""

    slices: list[DicomSlice]
    series_uid: str
    keys: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.slices]

    @property
    def header(self) -> Any:
        return self.slices[0].ds

    @property
    def description(self) -> str:
        return str(getattr(self.header, "SeriesDescription", "") or "")


# ----------------------------------------------------------------------------- scanning
def _is_dicom_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.upper() != "DICOMDIR"


def _truncation(path: Path, ds: Any) -> Optional[str]:
    """Why a DICOM image file is incomplete (pydicom reads truncated files silently), or None."""
    if "PixelData" in ds:
        try:
            elem = ds.get_item("PixelData", keep_deferred=True)
        except TypeError:  # pydicom < 3 keeps deferred values raw by default
            elem = ds.get_item("PixelData")
        length, tell = getattr(elem, "length", None), getattr(elem, "value_tell", None)
        if length not in (None, 0xFFFFFFFF) and tell is not None and tell + length > path.stat().st_size:
            return f"pixel data cut short ({path.stat().st_size - tell} of {length} bytes)"
        return None
    sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or getattr(ds, "SOPClassUID", ""))
    if sop in MR_IMAGE_CLASSES:
        return "an MR image without pixel data"
    return None


def _load_header(path: Path) -> Optional[Any]:
    try:
        ds = pydicom.dcmread(path, defer_size=256)  # large values (pixels) are not loaded
    except InvalidDicomError:
        return None
    except Exception as exc:  # corrupt header of a file that may claim to be DICOM
        ds, problem = None, str(exc)
    else:
        problem = _truncation(path, ds)
    if problem:
        with open(path, "rb") as f:
            head = f.read(132)
        if ds is not None or head[128:132] == b"DICM":
            raise BadInputError(f"{path} is a damaged or truncated DICOM file ({problem}). "
                                "Re-export the series from the scanner or PACS.")
        return None
    return ds


def _skip_reason(ds: Any) -> Optional[str]:
    modality = str(getattr(ds, "Modality", "") or "").upper()
    if modality in NON_IMAGE_MODALITIES or ("PixelData" not in ds and not hasattr(ds, "Rows")):
        return f"not an image ({modality or 'no modality'})"
    if not hasattr(ds, "ImagePositionPatient") or not hasattr(ds, "ImageOrientationPatient"):
        return "no ImagePositionPatient/ImageOrientationPatient"
    image_type = [str(v).upper() for v in (getattr(ds, "ImageType", []) or [])]
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        return "localizer"
    if (image_type and image_type[0] == "DERIVED") or any(w in image_type for w in DERIVED_WORDS):
        return "derived image (" + "\\".join(image_type) + ")"
    return None


def scan_folder(folder: str | Path) -> list[DicomSlice]:
    """Every usable DICOM image slice below ``folder`` (recursive).

    Raises:
        BadInputError: no files, no DICOM images, slices from several patients or studies,
            or a damaged DICOM file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder} is not a folder.")
    paths = sorted(p for p in folder.rglob("*") if _is_dicom_candidate(p))
    if not paths:
        raise BadInputError(f"{folder} is empty: no DICOM files (DICOMDIR alone is not enough).")
    slices, skipped = [], {}
    for path in paths:
        ds = _load_header(path)
        if ds is None:
            continue
        headers = frame_headers(ds) if is_multiframe(ds) else [ds]
        for frame, header in enumerate(headers):
            reason = _skip_reason(header)
            if reason:
                key = (str(getattr(ds, "SeriesNumber", "?")), str(getattr(ds, "SeriesDescription", "")), reason)
                skipped[key] = skipped.get(key, 0) + 1
                continue
            iop = np.array([float(v) for v in header.ImageOrientationPatient])
            slices.append(DicomSlice(path, header, np.array([float(v) for v in header.ImagePositionPatient]),
                                     np.cross(iop[:3], iop[3:]), frame if len(headers) > 1 else None))
    for (number, desc, reason), count in skipped.items():
        log.warning("skipped series %s '%s' in %s: %s (%d files)", number, desc, folder, reason, count)
    if not slices:
        raise BadInputError(f"{folder} holds no DICOM MR images usable as DCE phases "
                            f"({len(paths)} files: non-DICOM, or only localizers/derived/non-image objects).")
    for keyword, what in (("PatientID", "patients"), ("StudyInstanceUID", "studies")):
        values = sorted({str(getattr(s.ds, keyword, "")) for s in slices})
        if len(values) > 1:
            examples = {v: next(s.path for s in slices if str(getattr(s.ds, keyword, "")) == v) for v in values}
            listing = "; ".join(f"{v} (e.g. {p})" for v, p in examples.items())
            raise BadInputError(f"{folder} mixes {len(values)} {what}: {listing}. "
                                "Put each DCE study in its own folder.")
    return slices


# ----------------------------------------------------------------------------- phases
def _split_key(slices: list[DicomSlice], n: int, keyword: str) -> Optional[list[list[DicomSlice]]]:
    values = [s.get(keyword) for s in slices]
    if any(v is None for v in values):
        return None
    groups: dict[Any, list[DicomSlice]] = {}
    for s, v in zip(slices, values):
        groups.setdefault(str(v), []).append(s)
    if len(groups) != n:
        return None
    parts = list(groups.values())
    if any(len({round(s.distance, 2) for s in g}) != len(g) for g in parts):
        return None
    return parts


def _rank_per_position(slices: list[DicomSlice], n: int, where: str) -> list[list[DicomSlice]]:
    """Phase k = the k-th slice in time at each position (slice times may differ within a phase)."""
    by_pos: dict[float, list[DicomSlice]] = {}
    for s in slices:
        by_pos.setdefault(round(s.distance, 2), []).append(s)
    for keyword in SPLIT_KEYS[1:] + ("InstanceNumber",):
        getter = _float if keyword not in ("AcquisitionTime", "ContentTime") else _seconds_of_day
        ok = True
        for group in by_pos.values():
            values = [getter(s.get(keyword)) for s in group]
            if any(v is None for v in values) or len(set(values)) != len(values):
                ok = False
                break
        if ok:
            parts: list[list[DicomSlice]] = [[] for _ in range(n)]
            for group in by_pos.values():
                for k, s in enumerate(sorted(group, key=lambda s: getter(s.get(keyword)))):
                    parts[k].append(s)
            return parts
    raise BadInputError(f"{where}: several images at the same slice position and no TemporalPositionIdentifier, "
                        "TriggerTime, AcquisitionTime or InstanceNumber that tells them apart (duplicate time "
                        "points). Remove the duplicates or export one series per phase.")


def split_series(slices: list[DicomSlice], where: str) -> list[list[DicomSlice]]:
    """Split one series into volumes (phases): one if every slice position occurs once."""
    counts: dict[float, int] = {}
    for s in slices:
        key = round(s.distance, 2)
        counts[key] = counts.get(key, 0) + 1
    n = max(counts.values())
    if n == 1:
        return [slices]
    if len(set(counts.values())) != 1:
        raise BadInputError(f"{where}: slice positions occur {min(counts.values())} to {n} times; some phases "
                            "are incomplete or duplicated. Re-export the complete dynamic series.")
    declared = _float(slices[0].get("NumberOfTemporalPositions"))
    if declared is not None and int(declared) != n:
        log.warning("%s: NumberOfTemporalPositions says %d but %d images share each position", where, declared, n)
    for keyword in SPLIT_KEYS:
        parts = _split_key(slices, n, keyword)
        if parts is not None:
            return parts
    return _rank_per_position(slices, n, where)


def _volume_keys(slices: list[DicomSlice]) -> dict[str, Any]:
    def lowest(getter: Callable[[DicomSlice], Optional[float]]) -> Optional[float]:
        values = [getter(s) for s in slices]
        return None if any(v is None for v in values) else min(values)

    ds = slices[0].ds
    return {
        "TriggerTime": lowest(lambda s: _float(s.get("TriggerTime"))),
        "AcquisitionTime": lowest(lambda s: acquisition_clock(s.ds)),
        "ContentTime": lowest(lambda s: _clock(s.ds, "ContentDate", "ContentTime")),
        "TemporalPositionIdentifier": lowest(lambda s: _float(s.get("TemporalPositionIdentifier"))),
        "SeriesTime": _clock(ds, "SeriesDate", "SeriesTime"),
        "description": description_rank(str(getattr(ds, "SeriesDescription", "") or "")),
        "SeriesNumber": _float(getattr(ds, "SeriesNumber", None)),
        "bolus": _clock(ds, "AcquisitionDate", "ContrastBolusStartTime"),
    }


ORDER_KEYS = ("TriggerTime", "AcquisitionTime", "ContentTime", "TemporalPositionIdentifier", "SeriesTime",
              "description", "SeriesNumber")


def order_volumes(volumes: list[DicomVolume], where: str) -> tuple[list[DicomVolume], str]:
    """Sort volumes by the first key that is known and distinct for all; returns (volumes, key)."""
    for key in ORDER_KEYS:
        values = [v.keys[key] for v in volumes]
        if all(x is not None for x in values) and len(set(values)) == len(values):
            ordered = sorted(volumes, key=lambda v: v.keys[key])
            hints = [v.keys["description"] for v in ordered]
            if 0 in hints and hints.index(0) != 0:
                log.warning("%s: ordered by %s, but series '%s' (described as pre-contrast) is not first",
                            where, key, ordered[hints.index(0)].description)
            return ordered, key
    listing = ", ".join(f"'{v.description}' ({v.files[0].name})" for v in volumes)
    raise BadInputError(f"{where}: cannot order the phases {listing}: no acquisition time, trigger time, "
                        "temporal position, series time or description tells them apart (duplicate or missing "
                        "time points). Give the phase files in order instead.")


def dicom_times(volumes: list[DicomVolume]) -> Optional[list[float]]:
    """Seconds after injection (ContrastBolusStartTime) or after the pre-contrast phase (see module doc)."""
    acq = [v.keys["AcquisitionTime"] for v in volumes]
    bolus = volumes[0].keys["bolus"]
    if bolus is not None and bolus < 86400 <= (acq[0] or 0):  # bolus time without a date: the pre phase's day
        bolus += acq[0] - acq[0] % 86400
    if bolus is not None and all(a is not None and abs(a - bolus) < 43200 for a in acq):  # same clock, same day
        return [round(a - bolus, 6) for a in acq]
    trig = [v.keys["TriggerTime"] for v in volumes]
    if all(t is not None for t in trig) and len(set(trig)) == len(trig):
        return [round((t - trig[0]) / 1000.0, 6) for t in trig]
    for values in (acq, [v.keys["ContentTime"] for v in volumes]):
        if all(a is not None for a in values) and len(set(values)) == len(values):
            return [round(a - values[0], 6) for a in values]
    return None


def find_phases(folder: str | Path) -> tuple[list[DicomVolume], str]:
    """The DCE phases in ``folder``, ordered (pre-contrast first), and the key that ordered them."""
    where = str(folder)
    slices = scan_folder(folder)
    series: dict[str, list[DicomSlice]] = {}
    for s in slices:
        series.setdefault(str(getattr(s.ds, "SeriesInstanceUID", "")), []).append(s)
    volumes: list[DicomVolume] = []
    for uid, members in series.items():
        normals = {tuple(np.round(s.normal, 3)) for s in members}
        desc = str(getattr(members[0].ds, "SeriesDescription", "") or "")
        if len(normals) > 1 or len(members) < 2:
            log.warning("skipped series '%s' in %s: %s", desc, where,
                        "several orientations (localizer)" if len(normals) > 1 else "a single image, not a volume")
            continue
        for part in split_series(members, f"{where} (series '{desc}')"):
            part = sorted(part, key=lambda s: s.distance)
            volumes.append(DicomVolume(part, uid, _volume_keys(part)))
    if not volumes:
        raise BadInputError(f"{where} holds no DICOM volume usable as a DCE phase (only single images or localizers).")
    if len(volumes) == 1:
        raise BadInputError(f"{where} holds a single volume ('{volumes[0].description}', {volumes[0].files[0]}): "
                            "no post-contrast phase. Add the post-contrast series.")
    return order_volumes(volumes, where)


def read_volume(volume: DicomVolume, cache: Optional[dict] = None) -> sitk.Image:
    """Pixels of one phase: SimpleITK's series reader on the sorted files, or the frames of
    a multi-frame file (``cache`` keeps decoded multi-frame files between phases)."""
    if volume.slices[0].frame is not None:
        return read_frames(volume.files, [s.frame for s in volume.slices], [s.ds for s in volume.slices], cache)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in volume.files])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise BadInputError(f"The pixel data of series '{volume.description}' ({volume.files[0].parent}) cannot be "
                            f"read; a file is damaged or truncated ({detail}).") from exc


def _text(ds: Any, keyword: str) -> Optional[str]:
    value = getattr(ds, keyword, None)
    return None if value in (None, "") else str(value)


def read_dicom_study(folder: str | Path, times: Optional[Sequence[Optional[float]]] = None,
                     case_id: Optional[str] = None) -> DCEStudy:
    """Read the DCE study in a DICOM folder (see the module docstring for the rules).

    Raises:
        BadInputError: empty folder, no images, a single phase, mixed patients/studies,
            phases that cannot be ordered, damaged files, incompatible phases.
    """
    folder = Path(folder)
    from .slicegaps import check_slice_spacing, fill_gaps

    volumes, order_key = find_phases(folder)
    gaps = [check_slice_spacing([s.distance for s in v.slices], f"{folder} series '{v.description}'")
            for v in volumes]  # missing slices: refused, or interpolated when resampling is allowed
    cache: dict = {}
    images = [read_volume(v, cache) for v in volumes]
    images, vendor_scale = vendorscale.to_fp(images, [[s.ds for s in v.slices] for v in volumes])
    images = [fill_gaps(img, [s.distance for s in v.slices]) if gap else img
              for img, v, gap in zip(images, volumes, gaps)]
    if times is None:
        times = dicom_times(volumes)
    h = volumes[0].header
    metadata = {
        "format": "dicom",
        "manufacturer": _text(h, "Manufacturer"),
        "field_strength": _float(getattr(h, "MagneticFieldStrength", None)),
        "patient_id": _text(h, "PatientID"),
        "study_uid": _text(h, "StudyInstanceUID"),
        "series_uids": [v.series_uid for v in volumes],
        "series_descriptions": [v.description for v in volumes],
        "series_numbers": [v.keys["SeriesNumber"] for v in volumes],
        "phase_order_key": order_key,
        "orientation": [float(x) for x in h.ImageOrientationPatient],
        "source_files": [list(dict.fromkeys(str(p) for p in v.files)) for v in volumes],
        "dicom_folder": str(folder),
        "warnings": [g for g in gaps if g] + [w for w in [vendorscale.warning(vendor_scale, str(folder))] if w],
    }
    if vendor_scale:
        metadata["vendor_scale"] = vendor_scale
    sources = [f"{v.files[0].parent} series '{v.description}'" for v in volumes]
    return DCEStudy.from_images(images, times=times, metadata=metadata, case_id=case_id or folder.name,
                                sources=sources)
