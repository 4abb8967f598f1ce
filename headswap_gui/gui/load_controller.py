"""Loading a model in the window: one load at a time, the last request wins.

A load runs as a job under the key ``"load"`` with overlap ``"after"``: a new request stops
the running load and starts when it has ended, and a request made during that wait replaces
the waiting one. When core answers with a typed error that a question can resolve (a weights
file that needs an architecture, a pickle that needs trust), the controller asks and loads
again; other errors are shown with how to act on them in the window.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal, Slot

from headswap_gui.gui.job_events import LoadStage, ModelLoadResult, load_model_events
from headswap_gui.gui.messages import USE_AS_HEAD_HINT
from headswap_gui.gui.prompts import ArchitecturePrompt, TrustPrompt

if TYPE_CHECKING:
    from headswap_gui.gui.main_window import MainWindow

__all__ = ["USE_AS_HEAD_HINT", "LoadController"]


class LoadController(QObject):
    """Signals: ``modelLoaded(object)`` (a LoadedModel), ``loadFailed(str)``, ``loadEnded()``
    (the load job is over, loaded or not: the model may be used now)."""

    modelLoaded = Signal(object)
    loadFailed = Signal(str)
    loadEnded = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self._request: dict[str, Any] = {}  # the latest load asked for

    @staticmethod
    def tr(text: str) -> str:  # noqa: D102 - Qt's translation hook
        return QCoreApplication.translate("LoadController", text)

    def load(self, source: str, *, download: bool = False, arch: str | None = None, trust: bool = False) -> bool:
        """Load ``source`` on a worker thread; ``modelLoaded`` or ``loadFailed`` follows."""
        window = self._window
        if window.is_model_busy():
            window.statusBar().showMessage(self.tr("Stop training before loading another model."), 5000)
            return False
        source = source.strip()
        if not source:
            return False
        self._request = {"source": source, "download": download, "arch": arch, "trust": trust}
        runner = window.jobs.start(
            "load", load_model_events(source, download=download, arch=arch, trust=trust), overlap="after"
        )
        runner.eventEmitted.connect(self._on_runner_eventEmitted)
        runner.failed.connect(self._on_runner_failed)
        runner.finished.connect(self._on_runner_finished)
        text = self.tr("Downloading (if needed) and loading {source}…") if download else self.tr("Loading {source}…")
        window.model_panel.set_busy(text.format(source=source))
        window.busyChanged.emit(True)
        return True

    def _is_current(self) -> bool:
        return self._window.jobs.is_current("load", self.sender())

    @Slot(object)
    def _on_runner_eventEmitted(self, event: object) -> None:
        if not self._is_current():
            return
        if isinstance(event, LoadStage):
            self._window.model_panel.set_busy(event.text)
        elif isinstance(event, ModelLoadResult):
            self.install(event)

    def install(self, result: ModelLoadResult) -> None:
        """Make a load result the current model (the load job does this; a benchmark that
        loaded on its own thread may too)."""
        window = self._window
        loaded = result.loaded
        window.undo_stack.clear()
        window.controller.set_model(loaded, result.heads, result.output_shapes, result.tree)
        source = str(self._request.get("source") or loaded.source)
        if self._request.get("arch"):
            source = loaded.source  # a weights file: remembering it without its architecture would not reload
        window.remember_recent_model(source)
        window.setWindowTitle(loaded.source)  # Qt appends the application name, " — headswap"
        panel = window.model_panel
        if result.head_problem:
            panel.set_status(
                panel.status_label.text() + "<br><b>" + self.tr("No head found:") + "</b> "
                + result.head_problem + ". " + self.tr(USE_AS_HEAD_HINT)
            )
            window.statusBar().showMessage(self.tr("No classifier head found; right-click a layer → Use as head."), 10000)
        elif (head := window.controller.main_head()) is not None and head.role == "new":
            text = self.tr("feature extractor — a new head will be attached at {path} ({n} features) when you "
                           "train or replace the head").format(path=head.path, n=head.in_features)
            panel.set_status(panel.status_label.text() + "<br><b>" + text[0].upper() + text[1:] + "</b>")
            window.statusBar().showMessage(self.tr("Loaded {source}: {text}.").format(source=loaded.source, text=text), 10000)
        elif head is not None:
            window.statusBar().showMessage(
                self.tr("Loaded {source}; its head is {path} ({type}, {n} classes).").format(
                    source=loaded.source, path=head.path, type=head.type_name, n=head.out_features
                ),
                10000,
            )
        self.modelLoaded.emit(loaded)

    @Slot(str)
    def _on_runner_failed(self, message: str) -> None:
        if not self._is_current():
            return
        from headswap_gui.core.errors import NeedsArchitectureError, NeedsTrustError

        window = self._window
        request = dict(self._request)
        source = str(request.get("source", ""))
        error = window.jobs.runner("load").error
        retry: dict[str, Any] | None = None
        if isinstance(error, NeedsArchitectureError) and not request.get("arch"):
            arch = ArchitecturePrompt.ask(window, source, window.model_panel.zoo_sources())
            if arch:
                retry = {**request, "arch": arch}
        elif isinstance(error, NeedsTrustError) and not request.get("trust"):
            if TrustPrompt.ask(window, source):
                retry = {**request, "trust": True}
        if retry is not None:
            QTimer.singleShot(0, self, lambda: self.load(**retry))
            return
        if (os.sep in source or "/" in source) and not os.path.exists(source):
            window.forget_recent_model(source)  # moved or deleted
        text = self.tr("Could not load {source}.").format(source=source)
        if window.controller.loaded is not None:  # say which model the window still works with
            text += " " + self.tr("{current} is still loaded.").format(current=window.controller.loaded.source)
        window.model_panel.set_status(text)
        window.statusBar().showMessage(text, 10000)
        window.show_error(self.tr("Could not load the model"), message)  # explained, with the window's hint
        self.loadFailed.emit(message)

    @Slot()
    def _on_runner_finished(self) -> None:
        if not self._is_current():
            return
        self._window.model_panel.set_busy(None)
        self._window.busyChanged.emit(False)
        self.loadEnded.emit()
