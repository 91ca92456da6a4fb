"""`DCEStudy`: the one object every stage passes along.

A DCE-MRI study is a pre-contrast phase (index 0) and one or more post-contrast phases,
all on one voxel grid (the pre-contrast grid), as SimpleITK images in LPS physical
space, with acquisition times in seconds after contrast injection (``None`` when
unknown) and free-form metadata (source files, manufacturer, field strength, UIDs).

Usage::

    import SimpleITK as sitk
    from BreastDCESegLib.study import DCEStudy

    study = DCEStudy.from_images([pre, post1, post2], times=[0.0, 90.0, 180.0],
                                 sources=["pre.nii.gz", "p1.nii.gz", "p2.nii.gz"])
    study.arrays().shape          # (3, z, y, x) float32
    study.subtraction(1)          # post1 - pre as a numpy array

Phases on another grid over the same field of view are resampled (linear) onto the
pre-contrast grid by :meth:`DCEStudy.from_images`, with a warning in
``metadata["warnings"]``; misaligned phases (shift, rotation, spacing change beyond one
voxel / 1°) are refused with :class:`~BreastDCESegLib.errors.BadInputError` unless
resampling is allowed (:mod:`BreastDCESegLib.phase_geometry`); phases that do not overlap
it at all are always refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError

GEOMETRY_TOLERANCE = 1e-3  # mm / direction cosine: below this two grids count as equal


def _describe(source: Optional[str], index: int) -> str:
    return f"phase {index} ({source})" if source else f"phase {index}"


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = GEOMETRY_TOLERANCE) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol``)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned (LPS) bounding box of an image's voxel centres: (min corner, max corner)."""
    size = np.array(image.GetSize())
    corners = []
    for cx in (0, size[0] - 1):
        for cy in (0, size[1] - 1):
            for cz in (0, size[2] - 1):
                corners.append(image.TransformContinuousIndexToPhysicalPoint((float(cx), float(cy), float(cz))))
    pts = np.array(corners)
    return pts.min(axis=0), pts.max(axis=0)


def overlap_fraction(moving: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of the reference bounding box covered by the moving image's box."""
    mlo, mhi = physical_bounds(moving)
    rlo, rhi = physical_bounds(reference)
    spacing = np.array(reference.GetSpacing())
    inter = np.clip(np.minimum(mhi, rhi) - np.maximum(mlo, rlo) + spacing, 0, None)
    ref_extent = rhi - rlo + spacing
    return float(np.prod(inter) / np.prod(ref_extent))


def image_like(array: np.ndarray, reference: sitk.Image, dtype: Any = None) -> sitk.Image:
    """Wrap a (z, y, x) numpy array as an image with ``reference``'s geometry."""
    if dtype is not None:
        array = np.asarray(array, dtype=dtype)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return image


def resample_to(image: sitk.Image, reference: sitk.Image, interpolator: int = sitk.sitkLinear,
                default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid (identity transform, physical space)."""
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, default_value,
                         image.GetPixelID())


@dataclass
class DCEStudy:
    """Pre-contrast + post-contrast phases on one grid.

    Attributes:
        phases: SimpleITK images, float32, phase 0 pre-contrast, all on the grid of phase 0.
        times: acquisition time of each phase in seconds after injection, ``None`` if unknown.
        metadata: source files, manufacturer, field strength, UIDs, orientation...
        case_id: a short identifier used to name outputs.
    """

    phases: list[sitk.Image]
    times: list[Optional[float]]
    metadata: dict[str, Any] = field(default_factory=dict)
    case_id: str = "study"
    _cache: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    _derived: dict = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_images(
        cls,
        images: Sequence[sitk.Image],
        times: Optional[Sequence[Optional[float]]] = None,
        metadata: Optional[dict[str, Any]] = None,
        case_id: str = "study",
        sources: Optional[Sequence[Optional[str]]] = None,
        min_overlap: float = 0.5,
    ) -> "DCEStudy":
        """Validate phases, resample them onto the pre-contrast grid and build a study.

        Raises:
            BadInputError: fewer than two phases, an image that is not 3-D or not scalar,
                NaN/inf voxels, a phase whose extent covers less than ``min_overlap`` of
                the pre-contrast extent, a misaligned phase (see
                :mod:`~BreastDCESegLib.phase_geometry`), or times that are not increasing.
        """
        images = list(images)
        sources = list(sources) if sources is not None else [None] * len(images)
        where = f" in {sources[0]}" if sources and sources[0] else ""
        if len(images) < 2:
            raise BadInputError(
                f"A DCE study needs a pre-contrast phase and at least one post-contrast phase; "
                f"found {len(images)} phase(s){where}. Add the post-contrast series or files.")
        if times is None:
            times = [None] * len(images)
        times = [None if t is None else float(t) for t in times]
        if len(times) != len(images):
            raise BadInputError(f"{len(images)} phases but {len(times)} acquisition times were given.")
        known = [t for t in times if t is not None]
        if len(known) == len(times) and any(b <= a for a, b in zip(known, known[1:])):
            raise BadInputError(
                f"Acquisition times must increase from the pre-contrast phase on; got {times}. "
                "Check the phase order or give the times explicitly.")
        checked = []
        for k, (img, src) in enumerate(zip(images, sources)):
            checked.append(cls._check_phase(img, _describe(src, k)))
        from .phase_geometry import check_phase_grid

        reference = checked[0]
        out, warnings = [reference], []
        for k, img in enumerate(checked[1:], start=1):
            if same_grid(img, reference):
                img.CopyInformation(reference)  # remove sub-tolerance drift
                out.append(img)
                continue
            frac = overlap_fraction(img, reference)
            if frac < min_overlap:
                raise BadInputError(
                    f"{_describe(sources[k], k)} covers only {frac:.0%} of the pre-contrast field of view "
                    f"({sources[0] or 'phase 0'}); the phases cannot be put on one grid. "
                    "Check that all phases belong to the same acquisition.")
            warnings.append(check_phase_grid(img, reference, _describe(sources[k], k), _describe(sources[0], 0)))
            out.append(resample_to(img, reference))
        if all(float(np.ptp(sitk.GetArrayViewFromImage(img))) == 0.0 for img in out):
            warnings.append("every phase has one constant value (e.g. all zero): there is no image to segment; "
                            "check the export of the series.")
        meta = dict(metadata or {})
        meta.setdefault("sources", [s for s in sources])
        meta["warnings"] = list(dict.fromkeys(list(meta.get("warnings") or []) + warnings))
        return cls(phases=out, times=times, metadata=meta, case_id=case_id)

    @classmethod
    def from_arrays(
        cls,
        arrays: Sequence[np.ndarray] | np.ndarray,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
        times: Optional[Sequence[Optional[float]]] = None,
        metadata: Optional[dict[str, Any]] = None,
        case_id: str = "study",
    ) -> "DCEStudy":
        """Build a study from (z, y, x) arrays that share one grid (spacing given x, y, z)."""
        images = []
        for a in arrays:
            img = sitk.GetImageFromArray(np.asarray(a, dtype=np.float32))
            img.SetSpacing([float(s) for s in spacing])
            img.SetOrigin([float(o) for o in origin])
            img.SetDirection([float(d) for d in direction])
            images.append(img)
        return cls.from_images(images, times=times, metadata=metadata, case_id=case_id)

    @staticmethod
    def _check_phase(image: sitk.Image, name: str) -> sitk.Image:
        if image.GetDimension() != 3:
            raise BadInputError(
                f"{name} is {image.GetDimension()}-D; each phase must be a 3-D volume. "
                "A 4-D file holds all phases: read it with the 4-D reader.")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise BadInputError(
                f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour/vector); "
                "DCE phases must be scalar grey-level images.")
        if min(image.GetSize()) < 2:
            raise BadInputError(f"{name} has size {image.GetSize()}; a 3-D volume needs at least 2 voxels per axis.")
        image = sitk.Cast(image, sitk.sitkFloat32)
        arr = sitk.GetArrayViewFromImage(image)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise BadInputError(f"{name} contains {bad} NaN or infinite voxel(s); the file is damaged or "
                                "was written by a faulty conversion. Re-export the series.")
        return image

    # ----------------------------------------------------------------- geometry
    @property
    def n_phases(self) -> int:
        return len(self.phases)

    @property
    def n_post(self) -> int:
        return len(self.phases) - 1

    @property
    def pre(self) -> sitk.Image:
        return self.phases[0]

    @property
    def posts(self) -> list[sitk.Image]:
        return self.phases[1:]

    @property
    def reference(self) -> sitk.Image:
        """The grid every phase lives on (the pre-contrast image)."""
        return self.phases[0]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.reference.GetSpacing())

    @property
    def origin(self) -> tuple[float, float, float]:
        return tuple(self.reference.GetOrigin())

    @property
    def direction(self) -> tuple[float, ...]:
        return tuple(self.reference.GetDirection())

    @property
    def size(self) -> tuple[int, int, int]:
        """(x, y, z) voxel counts, ITK order."""
        return tuple(self.reference.GetSize())

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x), numpy order."""
        return tuple(reversed(self.reference.GetSize()))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    # ----------------------------------------------------------------- data
    def arrays(self) -> np.ndarray:
        """All phases as one float32 array (P, z, y, x); computed once and cached."""
        if self._cache is None:
            self._cache = np.stack([sitk.GetArrayFromImage(p) for p in self.phases]).astype(np.float32, copy=False)
        return self._cache

    def derived(self, name: str, compute: Callable[[], Any]) -> Any:
        """A value computed from the phases (``compute()``), once per study and then remembered under
        ``name``, as :meth:`arrays` is (a study's phases are not changed in place)."""
        if name not in self._derived:
            self._derived[name] = compute()
        return self._derived[name]

    def arrays_in(self, box: tuple[slice, ...]) -> np.ndarray:
        """All phases of the block ``box`` ((z, y, x) slices) as float32 (P, *block): from the
        cache when :meth:`arrays` has built it, else cut from each phase without building it
        (a lesion's box costs its own size, not a copy of the whole study)."""
        if self._cache is not None:
            return self._cache[(slice(None), *box)]
        return np.stack([sitk.GetArrayViewFromImage(p)[box] for p in self.phases]).astype(np.float32, copy=False)

    def array(self, k: int) -> np.ndarray:
        """Phase ``k`` as a (z, y, x) float32 array."""
        return self.arrays()[k]

    def subtraction(self, k: int = 1) -> np.ndarray:
        """Post-contrast phase ``k`` minus the pre-contrast phase, (z, y, x) float32."""
        if not 1 <= k < self.n_phases:
            raise IndexError(f"post-contrast phase {k} does not exist (study has {self.n_post})")
        a = self.arrays()
        return a[k] - a[0]

    def image_like(self, array: np.ndarray, dtype: Any = None) -> sitk.Image:
        """Wrap a (z, y, x) array as an image on this study's grid."""
        return image_like(array, self.reference, dtype)

    def subset(self, indices: Sequence[int]) -> "DCEStudy":
        """A study with only the given phases (index 0 must stay first, as the pre-contrast)."""
        indices = list(indices)
        if not indices or indices[0] != 0:
            raise ValueError("the first phase of a subset must be the pre-contrast phase 0")
        return DCEStudy(phases=[self.phases[i] for i in indices], times=[self.times[i] for i in indices],
                        metadata=dict(self.metadata), case_id=self.case_id)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: case, phase count, times, grid."""
        return {
            "case_id": self.case_id,
            "n_phases": self.n_phases,
            "times_s": self.times,
            "size_xyz": list(self.size),
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "origin_mm": [round(o, 6) for o in self.origin],
            "direction": [round(d, 6) for d in self.direction],
        }
