"""Everything that touches Slicer's scene: study volumes, subtractions, segmentations, editing.

Imports ``slicer``/``vtk`` inside functions only, so it runs in the Slicer application and
under the ``slicer-core`` wheel (plain Python, no Qt) alike. Geometry: SimpleITK images are
LPS, MRML is RAS; ``IJKToRAS = diag(-1, -1, 1) @ [direction * spacing | origin]``.

Usage::

    from BreastDCESegLib import mrml
    scene = mrml.new_scene()                      # or slicer.mrmlScene inside Slicer
    nodes = mrml.add_study(scene, study)          # volumes + sequence + browser, in a study folder
    subs = mrml.add_subtraction_volumes(scene, study, parent=nodes)
    seg = mrml.result_to_segmentation(result, nodes.volumes[0], include_breast=True)
    mrml.segment_statistics(seg, study=study)     # volume, diameter, centroid (RAS), lesions, PE
    study2 = mrml.study_from_sequence(nodes.sequence)
    editor = mrml.SegmentEditorSession(seg, subs[-1])
    editor.keep_largest_island(); editor.margin(2.0); editor.undo()

Re-running never overwrites a segmentation the user edited: every AI node carries a content
hash written with the result; a node whose current content differs counts as edited and a
new node ("<case> AI 2") is created instead.


Modules, by concern: :mod:`.scene` (stand-alone scene and module logics), :mod:`.volumes`
(images <-> volume nodes), :mod:`.phases` (phase order and times of picked nodes),
:mod:`.studies` (DCEStudy <-> volumes and sequences), :mod:`.hierarchy` (subject hierarchy),
:mod:`.derived` (subtractions, MIP, enhancement table), :mod:`.segments` (segment masks and
terminology), :mod:`.segmentations` (AI segmentation nodes), :mod:`.statistics` and
:mod:`.editor` (one-click editing). Everything is re-exported here.
"""

from .dicomdb import on_fp_scale  # noqa: F401
from .derived import (  # noqa: F401
    add_enhancement_curve_table, add_subtraction_volumes, set_window_level, table_columns, window_level_range)
from .editor import SegmentEditorSession  # noqa: F401
from .hierarchy import parent_item_of, place_in_hierarchy, study_item  # noqa: F401
from .phases import detect_sequence_phases, detect_volume_phases, phase_rank_from_name  # noqa: F401
from .scene import ATTR, SceneContext, module_logic, new_scene, new_scene_context  # noqa: F401
from .segmentations import (  # noqa: F401
    add_segmentation, content_hash, is_user_edited,
    result_to_segmentation)
from .segments import (  # noqa: F401
    ANATOMIC_CONTEXT, SEGMENT_TYPES, TERMINOLOGY_CONTEXT, reference_geometry, segment_array, segment_ids,
    set_segment, terminology_entry, tumor_segment_id)
from .statistics import segment_statistics, shape_statistics  # noqa: F401
from .studies import (  # noqa: F401
    StudyNodes, add_study, phase_names, remove_study, study_from_sequence, study_from_volumes)
from .volumes import (  # noqa: F401
    LPS_TO_RAS, ijk_to_ras, image_to_volume, set_lps_geometry, volume_ijk_to_ras, volume_to_image)
