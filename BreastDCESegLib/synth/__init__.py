"""A physics-based 3-D breast DCE-MRI phantom with ground truth.

Anatomy (prone, LPS millimetres): two pendulous breasts on a curved chest wall, skin,
fat, fibroglandular tissue (smoothed random field, BI-RADS density a-d), pectoral
muscle, rib layer, lungs, heart, aorta, internal mammary / lateral thoracic and small
intramammary vessels; malignant lesions (irregular, optionally spiculated, rim-enhancing,
multifocal), benign enhancing foci and background parenchymal enhancement (BPE).
Contrast: a population AIF (Parker 2006 or Weinmann) through the extended Tofts model
per kinetic class, the spoiled gradient-echo signal equation (T10, proton density, r1,
TR, flip angle), point-spread blur, small rigid motion between phases, a smooth bias
field, Rician noise, a vendor gain, integer output. Kinetics are computed once per
class and broadcast through a class map, so a 256x256x80 6-phase study takes seconds.

Usage::

    from BreastDCESegLib import synth
    ph = synth.make_phantom(seed=3, size=(128, 128, 48), n_post=4, orientation="axial")
    ph.study          # DCEStudy (times in s after injection, or None), integer-valued float32
    ph.tumor          # uint8 mask of the malignant lesions; ph.breast, ph.labels, ph.lesions
    synth.write_mama_mia(synth.make_cohort(5, first_seed=100), "phantoms/")

Modules, by concern: :mod:`.tissues` (labels and parameter tables), :mod:`.config` (settings,
result), :mod:`.kinetics` (AIF, Tofts, SPGR signal, timing), :mod:`.geometry` (grid, random
fields, lesion and vessel shapes), :mod:`.anatomy` (per-case choices, grid, tissues),
:mod:`.lesions`, :mod:`.render` (image formation), :mod:`.phantom` (the generator) and
:mod:`.writers`. Everything public is re-exported here. :mod:`.empirical` is a second generator,
written separately (empirical enhancement curves, supersampled partial volume, its own anatomy),
on which nothing was tuned or trained: ``make_empirical_phantom(seed)``.
"""

from .config import Phantom, PhantomConfig  # noqa: F401
from .empirical import make_empirical_phantom  # noqa: F401
from .kinetics import acquisition_times, parker_aif, spgr_signal, tofts_curves, weinmann_aif  # noqa: F401
from .phantom import make_cohort, make_phantom  # noqa: F401
from .tissues import TISSUE_LABELS  # noqa: F401
from .writers import write_dicom, write_mama_mia  # noqa: F401
