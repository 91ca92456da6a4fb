"""Philips images on one scale: the floating-point values of the private MR scale slope.

Philips stores an integer stored value (SV) per voxel and two scalings. RescaleSlope/Intercept
(RS, RI) give the displayed value ``DV = SV * RS + RI``, chosen per series to fill the display
range; the private MR scale slope (SS, tag (2005,100E) of creator ``Philips MR Imaging DD 001``)
gives the floating-point value ``FP = DV / (RS * SS)``, the one proportional to the receiver's
signal (Chenevert et al., *Transl Oncol* 2014; dcm2niix converts to FP by default). Phases
acquired as separate series can carry different RS and SS, so their displayed values are on
different scales: percent enhancement and SER between a pre-contrast series and a post-contrast
one read a scanner's rescaling, not contrast uptake (a post-contrast series displayed at 0.8 times
the pre-contrast's scale shows a 25 % enhancement as none; ``synth.exports`` ``phase-gain`` shows what
10 % does to the kinetic method).

The DICOM reader therefore turns every Philips image that carries SS into FP values, slice by
slice, and says so in the study's metadata (``vendor_scale``); a warning is added when the
phases' display scales differed (then the conversion changed the enhancement). Images of other
vendors, or without SS, are read as displayed values, as before.

Usage::

    from BreastDCESegLib.io import vendorscale
    vendorscale.fp_factor(ds)                    # 1 / (RS * SS) for a Philips header with SS, else None
    images, note = vendorscale.to_fp(images, [[s.ds for s in v.slices] for v in volumes])

Volumes that Slicer's DICOM module loaded get the same conversion from the DICOM database
(:func:`BreastDCESegLib.mrml.dicomdb.database_fp_factors`).
"""

from __future__ import annotations

import struct
from typing import Any, Optional, Sequence

import numpy as np
import SimpleITK as sitk

PHILIPS_CREATOR = "Philips MR Imaging DD 001"
SCALE_SLOPE_ELEMENT = 0x0E  # (2005,xx0E) in the block of PHILIPS_CREATOR: MR Scale Slope, FL
SCALE_SLOPE_TAG = (0x2005, 0x100E)  # where the block sits in Philips files (creator at (2005,0010))
SCALE_DIFFERENCE = 1e-4  # relative: phases whose factors differ by more were on different display scales


def _float_value(value: Any) -> Optional[float]:
    """A float from an FL element read with or without its VR (implicit VR gives raw bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return struct.unpack("<f", bytes(value[:4]))[0] if len(value) >= 4 else None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(str(value).split("\\")[0]) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def scale_slope(ds: Any) -> Optional[float]:
    """The private MR scale slope SS of a Philips header (found through its private creator, else at
    (2005,100E)); None when absent, not positive or not finite."""
    element = None
    try:
        element = ds.private_block(0x2005, PHILIPS_CREATOR)[SCALE_SLOPE_ELEMENT]
    except (KeyError, ValueError, AttributeError):
        element = ds.get(SCALE_SLOPE_TAG) if hasattr(ds, "get") else None
    value = _float_value(element.value) if element is not None else None
    return value if value is not None and np.isfinite(value) and value > 0 else None


def factor(manufacturer: Any, rescale_slope: Any, scale_slope_value: Any) -> Optional[float]:
    """``1 / (RS * SS)``: what turns a displayed value into Philips' floating-point value; None for
    another vendor, a missing or non-positive SS (values as a header or a DICOM database gives them)."""
    if "PHILIPS" not in str(manufacturer or "").upper():
        return None
    ss = _float_value(scale_slope_value)
    rs = _float_value(rescale_slope or 1.0) or 1.0
    if ss is None or not np.isfinite(ss) or ss <= 0 or rs <= 0:
        return None
    return 1.0 / (rs * ss)


def fp_factor(ds: Any) -> Optional[float]:
    """:func:`factor` of a pydicom header."""
    return factor(getattr(ds, "Manufacturer", None), getattr(ds, "RescaleSlope", None), scale_slope(ds))


def to_fp(images: Sequence[sitk.Image], headers: Sequence[Sequence[Any]]
          ) -> tuple[list[sitk.Image], Optional[dict[str, Any]]]:
    """(``images`` in Philips FP values, what was done) when every slice of every phase carries SS.

    ``headers[k][i]`` is the header of slice ``i`` (array index along z) of phase ``k``. Returns the
    images unchanged and None when any slice lacks SS (another vendor, an anonymiser that dropped the
    private tags: a mix cannot be put on one scale). Otherwise ``{"kind": "philips-fp", "factors": [...],
    "display_scales_differed": bool}`` with each phase's median factor."""
    factors = [[fp_factor(ds) for ds in phase] for phase in headers]
    if not factors or any(f is None for phase in factors for f in phase):
        return list(images), None
    out = []
    for image, phase in zip(images, factors):
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        if array.shape[0] != len(phase):
            raise ValueError(f"{len(phase)} slice headers for an image of {array.shape[0]} slices")
        array *= np.asarray(phase, dtype=np.float32)[:, None, None]
        scaled = sitk.GetImageFromArray(array)
        scaled.CopyInformation(image)
        out.append(scaled)
    every_slice = [f for phase in factors for f in phase]  # the slices of one phase may differ too
    return out, phase_factors_note([float(np.median(phase)) for phase in factors], every_slice)


def phase_factors_note(factors: Sequence[float], every_slice: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """What ``metadata["vendor_scale"]`` records for phases scaled by ``factors`` (whether the display scales
    differed: over ``every_slice``'s factors when given)."""
    spread = max(every_slice or factors) / min(every_slice or factors) - 1.0
    return {"kind": "philips-fp", "factors": [round(float(f), 9) for f in factors],
            "display_scales_differed": bool(spread > SCALE_DIFFERENCE)}


def warning(note: Optional[dict[str, Any]], where: str) -> Optional[str]:
    """The study warning for a conversion that changed the enhancement (display scales differed)."""
    if not note or not note["display_scales_differed"]:
        return None
    ratios = ", ".join(f"{f / note['factors'][0]:.3g}" for f in note["factors"])
    return (f"{where}: the Philips phases were displayed on different scales (RescaleSlope x private scale slope; "
            f"each phase's factor over the pre-contrast's: {ratios}); read as Philips floating-point values "
            "(FP = displayed value / (RescaleSlope x MR scale slope)) so that enhancement is measured on one scale.")
