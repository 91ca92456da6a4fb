"""Phase order and acquisition times of volumes loaded by Slicer's DICOM module, from the DICOM database.

Slicer's DICOM plugins store the SOP Instance UIDs a volume was loaded from in its
``DICOM.instanceUIDs`` attribute (space-separated). The DICOM database
(``slicer.dicomDatabase``, a ``ctkDICOMDatabase``) answers tag values per instance
(``instanceValue(uid, "0018,1060")``) or per file (``fileValue(fileForInstance(uid), tag)``).
From those tags the volumes are ordered and timed by the same rule as a DICOM folder read from
disk (:mod:`BreastDCESegLib.io.dicom`: TriggerTime, acquisition clock time, ContentTime,
TemporalPositionIdentifier, SeriesTime, description, SeriesNumber; times in seconds after the
injection when ContrastBolusStartTime is known, else after the pre-contrast phase).

The database is passed in (the panel passes ``slicer.dicomDatabase``), so any object with
``instanceValue`` (and optionally ``fileForInstance``/``fileValue``) works, e.g. one built over
real DICOM files in a test.

The same tags put Philips phases on one scale (:func:`on_fp_scale`, as :mod:`BreastDCESegLib.io.vendorscale`
does for a folder read from disk): Slicer loads displayed values, which differ in scale between series.

Usage::

    found = database_phases(volume_nodes, slicer.dicomDatabase)
    if found is not None:
        order, times = found          # indexes into volume_nodes, pre-contrast first; seconds
    study = on_fp_scale(study, phase_nodes, slicer.dicomDatabase)   # Philips FP values, when every phase has them
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Optional, Sequence

from ..errors import BadInputError

UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
# DICOM keyword -> tag as the ctkDICOMDatabase API spells it
TAGS = {"TriggerTime": "0018,1060", "AcquisitionDateTime": "0008,002A", "AcquisitionDate": "0008,0022",
        "AcquisitionTime": "0008,0032", "ContentDate": "0008,0023", "ContentTime": "0008,0033",
        "TemporalPositionIdentifier": "0020,0100", "SeriesDate": "0008,0021", "SeriesTime": "0008,0031",
        "SeriesDescription": "0008,103E", "SeriesNumber": "0020,0011", "ContrastBolusStartTime": "0018,1042",
        "Manufacturer": "0008,0070", "RescaleSlope": "0028,1053", "PhilipsScaleSlope": "2005,100E"}


class InstanceTags:
    """The tags of one instance in the database, read like a pydicom dataset (``tags.TriggerTime``)."""

    def __init__(self, database: Any, uid: str):
        self._database, self._uid = database, uid

    def __getattr__(self, keyword: str) -> Optional[str]:
        tag = TAGS.get(keyword)
        if tag is None:
            raise AttributeError(keyword)
        value = str(self._database.instanceValue(self._uid, tag) or "").strip()
        if not value and hasattr(self._database, "fileForInstance") and hasattr(self._database, "fileValue"):
            path = self._database.fileForInstance(self._uid)
            value = str(self._database.fileValue(path, tag) or "").strip() if path else ""
        return value or None


class _Instance:
    """What :func:`BreastDCESegLib.io.dicom._volume_keys` reads of a slice: ``ds`` and ``get``."""

    def __init__(self, tags: InstanceTags):
        self.ds = tags

    def get(self, keyword: str) -> Optional[str]:
        return getattr(self.ds, keyword, None)


@dataclass
class _Volume:
    """What :func:`BreastDCESegLib.io.dicom.order_volumes` and ``dicom_times`` read of a phase."""

    keys: dict[str, Any]
    index: int
    description: str
    files: list[PurePath] = field(default_factory=list)


def instance_uids(node: Any) -> list[str]:
    """The SOP Instance UIDs a volume node was loaded from ([] when not loaded from DICOM)."""
    return (node.GetAttribute(UIDS_ATTRIBUTE) or "").split()


def database_phases(nodes: Sequence[Any], database: Any) -> Optional[tuple[list[int], list[Optional[float]]]]:
    """(order, times) of volume nodes from their instances' tags, or None when the database or the
    UIDs are missing or nothing tells the phases apart. ``times`` are seconds (None if unknown)."""
    from ..io.dicom import _volume_keys, dicom_times, order_volumes

    if database is None or not nodes:
        return None
    uids = [instance_uids(node) for node in nodes]
    if not all(uids):
        return None
    volumes = [_Volume(_volume_keys([_Instance(InstanceTags(database, uid)) for uid in node_uids]), i,
                       nodes[i].GetName() or "", [PurePath(nodes[i].GetID())]) for i, node_uids in enumerate(uids)]
    try:
        ordered, _ = order_volumes(volumes, "the DICOM database")
    except BadInputError:
        return None
    return [v.index for v in ordered], list(dicom_times(ordered) or [None] * len(ordered))


def database_fp_factors(nodes: Sequence[Any], database: Any) -> Optional[list[float]]:
    """Each phase node's Philips factor ``1 / (RS * SS)`` (:func:`vendorscale.factor`), read from its first,
    middle and last instance; None when the database or a node's UIDs are missing, a node is not a Philips
    image with the private scale slope, or its instances' factors differ (a per-slice scale the loaded volume
    no longer tells apart)."""
    from ..io import vendorscale

    if database is None or not nodes:
        return None
    factors = []
    for node in nodes:
        uids = instance_uids(node)
        if not uids:
            return None
        found = set()
        for uid in dict.fromkeys((uids[0], uids[len(uids) // 2], uids[-1])):
            tags = InstanceTags(database, uid)
            found.add(vendorscale.factor(tags.Manufacturer, tags.RescaleSlope, tags.PhilipsScaleSlope))
        if None in found or max(found) / min(found) - 1.0 > vendorscale.SCALE_DIFFERENCE:
            return None
        factors.append(found.pop())
    return factors


def on_fp_scale(study: Any, nodes: Sequence[Any], database: Any) -> Any:
    """``study`` (phase ``k`` built from ``nodes[k]``) in Philips floating-point values when
    :func:`database_fp_factors` finds them, with ``metadata["vendor_scale"]`` and, when the phases' display
    scales differed, a warning; otherwise ``study`` itself."""
    from ..io import vendorscale
    from ..signal_zero import mapped

    factors = database_fp_factors(nodes, database)
    if factors is None:
        return study
    scaled = mapped(study, [0.0] * study.n_phases, factors)
    note = vendorscale.phase_factors_note(factors)
    scaled.metadata["vendor_scale"] = note
    said = vendorscale.warning(note, "the DICOM database")
    if said:
        scaled.metadata["warnings"] = list(scaled.metadata.get("warnings") or []) + [said]
    return scaled
