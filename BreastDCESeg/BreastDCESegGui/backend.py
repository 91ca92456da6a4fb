"""The panel's "Backend" choice: *This computer* or *Remote server* (Slicer-application glue).

The URL and the token live in Slicer's settings (``qt.QSettings``), never in the parameter
node, so the token is never written into a scene file. The choice itself is applied by
:class:`BreastDCESegLib.backends.RunLauncher` (through ``SceneLogic.start(..., server=...)``).

Usage (the module widget's setup)::

    self.backend = BackendPanel(ui, logic)
    logic.start(study, reference, modelId, device, python, includeBreast, server=self.backend.server())
"""

from typing import Optional

import qt
import slicer

from BreastDCESegLib.backends import BACKENDS, RunLauncher

KEYS = {"backend": "BreastDCESeg/Backend", "url": "BreastDCESeg/ServerURL", "token": "BreastDCESeg/ServerToken"}
CLIENT_REQUIREMENT = "httpx>=0.27,<1"


class BackendPanel:
    """Binds the backend widgets to Slicer's settings; :meth:`server` is what Apply passes on."""

    def __init__(self, ui, logic):
        self.ui, self.logic = ui, logic
        settings = qt.QSettings()
        ui.backendComboBox.addItems(list(BACKENDS))
        ui.backendComboBox.setCurrentIndex(max(ui.backendComboBox.findText(str(settings.value(KEYS["backend"]) or "")), 0))
        ui.serverUrlLineEdit.text = str(settings.value(KEYS["url"]) or "")
        ui.serverTokenLineEdit.text = str(settings.value(KEYS["token"]) or "")
        ui.backendComboBox.currentIndexChanged.connect(lambda *_: self.update())
        ui.serverCheckButton.clicked.connect(self.check)
        self.update()

    def remote(self) -> bool:
        return self.ui.backendComboBox.currentText == BACKENDS[1]

    def update(self) -> None:
        remote = self.remote()
        self.ui.serverWidget.visible = remote
        self.ui.pythonPathWidget.enabled = not remote  # the server has its own environment and device
        self.ui.deviceComboBox.enabled = not remote

    def save(self) -> None:
        settings = qt.QSettings()
        settings.setValue(KEYS["backend"], self.ui.backendComboBox.currentText)
        settings.setValue(KEYS["url"], self.ui.serverUrlLineEdit.text.strip())
        settings.setValue(KEYS["token"], self.ui.serverTokenLineEdit.text.strip())

    def server(self) -> Optional[dict]:
        """``{"url", "token"}`` for a remote run (settings saved, client installed), None for local."""
        self.save()
        if not self.remote():
            return None
        url = self.ui.serverUrlLineEdit.text.strip()
        if not url.startswith(("http://", "https://")):
            raise ValueError("Enter the server's address, e.g. https://gpu-server:8765 (Backend: Remote server).")
        self._ensureClient()
        return {"url": url, "token": self.ui.serverTokenLineEdit.text.strip()}

    def _ensureClient(self) -> None:
        from BreastDCESegGui import dependencies

        missing = [] if _importable("httpx") else [CLIENT_REQUIREMENT]
        if missing and slicer.util.confirmOkCancelDisplay(
                f"The remote backend needs {', '.join(missing)} in Slicer's Python. Install it now?",
                "Breast DCE Segmentation"):
            dependencies.install(missing)

    def check(self) -> None:
        """Connect to the server, list its models in the model selector and say what it runs."""
        with slicer.util.tryWithErrorDisplay("Could not reach the segmentation server.", waitCursor=True):
            server = self.server() or {"url": self.ui.serverUrlLineEdit.text.strip(),
                                       "token": self.ui.serverTokenLineEdit.text.strip()}
            registry = RunLauncher.serverModels(server)
            combo, current = self.ui.modelComboBox, self.ui.modelComboBox.currentData
            combo.clear()
            for entry in registry["models"]:
                if entry.get("task", "tumor") == "tumor":
                    combo.addItem(entry["title"], entry["id"])
            combo.setCurrentIndex(max(combo.findData(current or registry["default"]), 0))
            slicer.util.showStatusMessage(f"Server {server['url']}: {combo.count} tumor model(s)", 5000)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
