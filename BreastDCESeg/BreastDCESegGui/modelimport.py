"""The Model section's *Import model…* button: asks what was downloaded (a zhang2023
checkpoint, an nnU-Net results folder or zip), the file or folder, an id and the licence, then
runs :meth:`BreastDCESegLib.scene_logic.SceneLogic.importModel` (the same checks as
``breastdceseg models import``: safe loading, strict fit, SHA-256, user registry).

Usage (the module widget)::

    ui.importModelButton.clicked.connect(lambda: self.guarded("import the model", lambda: import_model(self)))
"""

import qt
import slicer

# (what the user picks, family, file dialog kind, default id)
KINDS = (
    ("Zhang et al. 2023 checkpoint (best_model.pth)", "zhang2023", "file", "zhang2023-patterns"),
    ("nnU-Net v2 results folder (e.g. MAMA-MIA)", "nnunet", "folder", "mamamia-nnunet"),
    ("nnU-Net v2 results folder as a .zip", "nnunet", "zip", "mamamia-nnunet"),
)


def _ask_path(parent, kind):
    if kind == "folder":
        return qt.QFileDialog.getExistingDirectory(parent, "nnU-Net results folder (with dataset.json, plans.json)")
    pattern = "Zip archives (*.zip)" if kind == "zip" else "PyTorch checkpoints (*.pth *.pt *.safetensors)"
    return qt.QFileDialog.getOpenFileName(parent, "Downloaded model", "", pattern + ";;All files (*)")


def import_model(widget):
    """Ask, import, refresh the model list and select the new model; returns its id (None: cancelled)."""
    parent = widget.parent
    labels = [k[0] for k in KINDS]
    choice = qt.QInputDialog.getItem(parent, "Import model", "What did you download?", labels, 0, False)
    if not choice:
        return None
    _, family, kind, default_id = KINDS[labels.index(choice)]
    path = _ask_path(parent, kind)
    if not path:
        return None
    model_id = qt.QInputDialog.getText(parent, "Import model", "Model id (lower case, digits, . _ -):",
                                       qt.QLineEdit.Normal, default_id)
    if not model_id:
        return None
    licence = qt.QInputDialog.getText(parent, "Import model", "Licence of the weights, as published:",
                                      qt.QLineEdit.Normal, "CC BY-NC 4.0" if family == "nnunet" else "")
    replace = False
    if model_id in [e["id"] for e in widget.logic.models()] and widget.logic.modelInfo(model_id).get("weights"):
        replace = slicer.util.confirmOkCancelDisplay(f"A model '{model_id}' exists. Replace it?")
        if not replace:
            return None
    with slicer.util.tryWithErrorDisplay("Import failed.", waitCursor=True):
        entry = widget.logic.importModel(path, family, model_id, licence=licence or None, replace=replace)
        widget.fillModels(entry["id"])
        widget.log(f"Imported model {entry['id']} ({family}) from {path}: SHA-256 {entry['weights']['sha256'][:16]}…")
        return entry["id"]
    return None
