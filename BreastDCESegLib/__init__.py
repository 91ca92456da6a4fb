"""BreastDCESegLib: the core of the BreastDCESeg 3D Slicer extension.

A normal Python package: it imports neither ``qt`` nor ``slicer`` at module level, so it
runs in Slicer, in a background worker and in plain Python. Data flows one way::

    files --io--> DCEStudy --inference.segment--> SegmentationResult --io/mrml--> files or scene

Usage::

    from BreastDCESegLib import synth, inference
    phantom = synth.make_phantom(seed=1)
    result = inference.segment(phantom.study, "kinetic")
"""

from .errors import BadInputError, BreastDCESegError, MissingDependencyError, ModelError  # noqa: F401
from .study import DCEStudy  # noqa: F401

__version__ = "0.1.0"
