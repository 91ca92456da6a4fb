"""Write a :class:`DCEStudy` as MR Image Storage DICOM (one file per slice).

Two layouts, as scanners export them:

* ``"series-per-phase"``: one series per phase (``DCE pre``, ``DCE post1`` ...),
* ``"single-series"``: one dynamic series, phases told apart by TemporalPositionIdentifier.

Geometry comes from the study grid: ImageOrientationPatient from the direction matrix
(axial, sagittal, oblique), ImagePositionPatient per slice, PixelSpacing, SliceThickness.
Timing: with known times, ContrastBolusStartTime is the injection clock time,
AcquisitionTime = injection + t_k, TriggerTime = (t_k - t_0) in ms; the reader recovers the
times exactly from these. Integer-valued studies are stored as integers; others with a
RescaleSlope/RescaleIntercept. A left-handed grid is stored flipped along z (DICOM slices
are right-handed), describing the same physical volume.

Usage::

    from BreastDCESegLib.io.dicomwrite import write_dicom_study
    folder = write_dicom_study(study, "dicom/case1", layout="single-series", patient_id="P001")
"""

from __future__ import annotations

import copy
import datetime as _dt
from pathlib import Path
from typing import Optional

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..errors import BadInputError
from ..study import DCEStudy
from .atomic import atomic_path

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
LAYOUTS = ("series-per-phase", "single-series")
DEFAULT_INTERVAL_S = 60.0  # phase spacing written when the study's times are unknown


def _clock(moment: _dt.datetime) -> tuple[str, str]:
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")


def _right_handed(study: DCEStudy) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(arrays (P, z, y, x), origin, direction 3x3 (columns = axes), spacing) with det(direction) > 0."""
    arrays = study.arrays()
    origin = np.array(study.origin, dtype=float)
    direction = np.array(study.direction, dtype=float).reshape(3, 3)
    spacing = np.array(study.spacing, dtype=float)
    if np.linalg.det(direction) < 0:
        origin = origin + direction[:, 2] * spacing[2] * (arrays.shape[1] - 1)
        direction = direction.copy()
        direction[:, 2] *= -1
        arrays = arrays[:, ::-1]
    return arrays, origin, direction, spacing


def _pixel_encoding(arrays: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    """(stored uint16/int16 arrays, slope, intercept, PixelRepresentation)."""
    lo, hi = float(arrays.min()), float(arrays.max())
    if np.array_equal(arrays, np.round(arrays)):
        if lo >= 0 and hi <= 65535:
            return arrays.astype(np.uint16), 1.0, 0.0, 0
        if lo >= -32768 and hi <= 32767:
            return arrays.astype(np.int16), 1.0, 0.0, 1
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.round((arrays - lo) / slope).clip(0, 65535).astype(np.uint16)
    return stored, slope, lo, 0


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


def _base_dataset(patient_id: str, patient_name: str, study_uid: str, frame_uid: str,
                  start: _dt.datetime, manufacturer: str, field_strength: float, description: str) -> Dataset:
    ds = Dataset()
    date, time = _clock(start)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.StudyDate, ds.StudyTime = date, time
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = "4.5"
    ds.EchoTime = "1.8"
    ds.EchoTrainLength = "1"
    ds.FlipAngle = "12"
    ds.MagneticFieldStrength = _ds(field_strength)
    ds.StudyInstanceUID = study_uid
    ds.StudyID = "1"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_dicom_study(study: DCEStudy, folder: str | Path, layout: str = "series-per-phase",
                      patient_id: str = "BREASTDCESEG", patient_name: Optional[str] = None,
                      study_uid: Optional[str] = None, manufacturer: str = "BreastDCESeg phantom",
                      field_strength: float = 1.5, study_description: str = "DCE-MRI breast",
                      start: Optional[_dt.datetime] = None, first_series_number: int = 3,
                      overwrite: bool = False) -> Path:
    """Write ``study`` as DICOM MR images under ``folder`` (created atomically); returns ``folder``.

    Files go to ``folder/S<series number>/I<instance>.dcm``. The study's metadata
    ``patient_id``/``study_uid`` are used when the arguments are not given.
    """
    if layout not in LAYOUTS:
        raise BadInputError(f"Unknown DICOM layout {layout!r}; use one of {LAYOUTS}.")
    folder = Path(folder)
    arrays, origin, direction, spacing = _right_handed(study)
    stored, slope, intercept, representation = _pixel_encoding(arrays)
    n_phases, nz = stored.shape[0], stored.shape[1]
    known = all(t is not None for t in study.times)
    times = [float(t) for t in study.times] if known else [k * DEFAULT_INTERVAL_S for k in range(n_phases)]
    start = start or _dt.datetime(2024, 1, 15, 10, 0, 0)
    injection = start + _dt.timedelta(seconds=max(0.0, -min(times)) + 60.0)
    study_uid = study_uid or study.metadata.get("study_uid") or generate_uid()
    base = _base_dataset(patient_id, patient_name or f"{patient_id}^", study_uid, generate_uid(), start,
                         manufacturer, field_strength, study_description)
    if known:
        base.ContrastBolusAgent = "Gadolinium"
        base.ContrastBolusStartTime = _clock(injection)[1]
    base.Rows, base.Columns = int(stored.shape[2]), int(stored.shape[3])
    base.PixelRepresentation = representation
    base.ImageOrientationPatient = [_ds(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    base.SliceThickness = base.SpacingBetweenSlices = _ds(spacing[2])
    base.RescaleIntercept, base.RescaleSlope, base.RescaleType = _ds(intercept), _ds(slope), "US"
    single = layout == "single-series"
    series_uids = [generate_uid()] * n_phases if single else [generate_uid() for _ in range(n_phases)]
    with atomic_path(folder, overwrite=overwrite) as tmp:
        for k in range(n_phases):
            acquired = injection + _dt.timedelta(seconds=times[k])
            number = first_series_number if single else first_series_number + k
            series_start = injection + _dt.timedelta(seconds=times[0]) if single else acquired
            out = tmp / f"S{number:03d}"
            out.mkdir(parents=True, exist_ok=True)
            ds = copy.deepcopy(base)  # one dataset per phase: each slice sets its own elements, then is written
            ds.SeriesInstanceUID = series_uids[k]
            ds.SeriesNumber = number
            ds.SeriesDate, ds.SeriesTime = _clock(series_start)
            ds.SeriesDescription = "DCE dynamic" if single else ("DCE pre" if k == 0 else f"DCE post{k}")
            ds.AcquisitionNumber = k + 1
            ds.AcquisitionDate, ds.AcquisitionTime = _clock(acquired)
            ds.ContentDate, ds.ContentTime = _clock(acquired)
            ds.TriggerTime = _ds((times[k] - times[0]) * 1000.0)
            ds.TemporalPositionIdentifier = k + 1
            ds.NumberOfTemporalPositions = n_phases
            for z in range(nz):
                ds.SOPInstanceUID = generate_uid()
                ds.InstanceNumber = (k * nz + z + 1) if single else z + 1
                ds.ImagePositionPatient = [_ds(v) for v in origin + direction[:, 2] * spacing[2] * z]
                ds.SliceLocation = _ds(float(np.dot(origin + direction[:, 2] * spacing[2] * z, direction[:, 2])))
                ds.PixelData = np.ascontiguousarray(stored[k, z]).tobytes()
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
                ds.file_meta = meta
                ds.save_as(out / f"I{ds.InstanceNumber:05d}.dcm", enforce_file_format=True)
    return folder
