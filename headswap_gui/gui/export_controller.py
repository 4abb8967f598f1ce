"""Getting a model out of the window: copying the run folder, exporting TorchScript / ONNX.

``export`` starts ``core.export`` as the ``"export"`` job holding the model lease (so nothing
edits or trains the model meanwhile), with the parity check on validation images of the last
evaluation when there are any. When it ends, a dialog says where the file went, how large it
is and how closely it matches PyTorch, with a way to its folder: a status-bar line alone is
gone before a user looks for the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox

from headswap_gui.gui.job_events import JobDone, LoadStage, export_events
from headswap_gui.gui.messages import explain
from headswap_gui.gui.prompts import ExportPrompt, SaveRunPrompt

if TYPE_CHECKING:
    from headswap_gui.gui.main_window import MainWindow

__all__ = ["ExportController"]

_PARITY_TOLERANCE = 1e-3  # largest |Δlogit| still called "the same class scores"


class ExportController(QObject):
    """``last_export`` holds the report of the last finished export (None before one)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self.last_export: Any = None

    @staticmethod
    def tr(text: str) -> str:  # noqa: D102 - Qt's translation hook
        return QCoreApplication.translate("ExportController", text)

    def save_run_as(self, target: str | None = None) -> str | None:
        """Copy the last run folder to ``target`` (asked for when not given)."""
        window = self._window
        source = window.state.run_dir
        if not source or not Path(source).is_dir():
            window.show_error(self.tr("No run to save"), self.tr("Train a model first; each run is saved in its own folder."))
            return None
        if target is None:
            target = SaveRunPrompt.ask(window, str(Path.home() / Path(source).name))
        if not target:
            return None
        from headswap_gui.core.errors import HeadswapError
        from headswap_gui.core.run_store import copy_run

        try:
            copy_run(source, target)  # the committed epoch only: no lock or temp files
        except HeadswapError as error:
            window.show_error(self.tr("Could not save the run"), explain(error))
            return None
        window.statusBar().showMessage(
            self.tr("Run saved to {path}; open it as a model to continue.").format(path=target), 10000
        )
        return target

    def export(self, answer: tuple[str, str] | None) -> bool:
        """Export the model as ``(format, path)`` (asked for when ``None``) on a worker thread."""
        window = self._window
        loaded = window.controller.loaded
        if loaded is None or window.is_model_busy():
            return False
        if answer is None:
            run = Path(window.state.run_dir).name if window.state.run_dir else ""
            name = run or Path(loaded.source.replace(":", "_")).name
            answer = ExportPrompt.ask(window, str(Path.home() / f"{name}.onnx"))
        if answer is None:
            return False
        fmt, path = answer
        evaluation = window.state.evaluation
        images = list(evaluation.paths[:8]) if evaluation is not None else []
        runner = window.jobs.start("export", export_events(loaded, fmt, path, images), lease_as="export", stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_runner_eventEmitted)
        runner.failed.connect(self._on_runner_failed)
        return True

    @Slot(object)
    def _on_runner_eventEmitted(self, event: object) -> None:
        window = self._window
        if isinstance(event, LoadStage):
            window.statusBar().showMessage(event.text)
        elif isinstance(event, JobDone):
            report = event.value
            self.last_export = report
            window.statusBar().showMessage(self.tr("Exported: {text}").format(text=report.describe()), 20000)
            if not window.is_closing():
                self._show_done(report)

    def _show_done(self, report: Any) -> None:
        path = Path(report.path)
        size = path.stat().st_size if path.is_file() else 0
        match = (
            self.tr("It gives the same class scores as PyTorch on {n} {source} (largest difference {d:.1e}).")
            if report.max_abs_logit_difference < _PARITY_TOLERANCE
            else self.tr("Its class scores differ from PyTorch's by up to {d:.1e} on {n} {source}: "
                         "check it before relying on it.")
        ).format(n=report.samples, source=report.sample_source, d=report.max_abs_logit_difference)
        box = QMessageBox(
            QMessageBox.Icon.Information, self.tr("Export finished"),
            self.tr("Wrote the {fmt} model ({size}) to\n{path}\n\n{match}").format(
                fmt=report.format, size=_file_size(size), path=str(path), match=match
            ),
            QMessageBox.StandardButton.Ok, self._window,
        )
        box.setObjectName("exportDoneBox")
        reveal = box.addButton(self.tr("Show in folder"), QMessageBox.ButtonRole.ActionRole)
        reveal.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent))))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    @Slot(str)
    def _on_runner_failed(self, message: str) -> None:
        if not self._window.is_closing():
            self._window.show_error(self.tr("Export failed"), message)


def _file_size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MB"
    return f"{max(1, round(n / 1024))} KB"
