"""Slicer-application glue of the Breast DCE Segmentation module (needs the Slicer application).

Kept out of ``BreastDCESegLib`` (which runs without Slicer) and out of the module file (which
stays a thin shell): installing Python dependencies into Slicer (:mod:`.dependencies`) and
showing results in Slicer's views and editors (:mod:`.views`).

Usage inside Slicer::

    from BreastDCESegGui import dependencies, views
    missing = dependencies.missing_requirements(needs_torch=True)
    dependencies.install(missing)
    views.open_segment_editor(segmentation_node, subtraction_volume_node)
"""
