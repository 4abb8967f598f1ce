"""The questions the window asks the user, each a class with one ``ask`` classmethod.

One place for every modal question, so tests replace ``ask`` (pytest's monkeypatch) instead of
clicking through a native dialog, and the window's logic reads as "if the user agrees".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

__all__ = [
    "ArchitecturePrompt",
    "ClusterFolderPrompt",
    "ExportPrompt",
    "OpenModelPrompt",
    "ReplaceTrainedHeadQuestion",
    "SaveRunPrompt",
    "StopTrainingQuestion",
    "TrustPrompt",
]



def _yes_or_no(parent: QWidget | None, title: str, text: str) -> bool:
    """A Yes/No question whose safe answer, No, is the default."""
    answer = QMessageBox.question(
        parent, parent.tr(title) if parent else title, text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class ReplaceTrainedHeadQuestion:
    """The head was trained here (or comes from a run): replace it anyway?"""

    @classmethod
    def ask(cls, parent: QWidget | None) -> bool:
        return _yes_or_no(
            parent, "Replace the trained head?",
            "This head has been trained. A new head starts from random weights.\n\n"
            "Edit ▸ Undo brings the trained head back, and its run folder keeps it either way.",
        )


class StopTrainingQuestion:
    """Closing while training: stop the run and close?"""

    @classmethod
    def ask(cls, parent: QWidget | None) -> bool:
        return _yes_or_no(
            parent, "Training is running",
            "Training is still running. Stop it and close the window?\n\n"
            "The best epoch so far is already saved in the run folder.",
        )


class ArchitecturePrompt:
    """A weights file without metadata: which architecture do the weights belong to?"""

    @classmethod
    def ask(cls, parent: QWidget | None, path: str, choices: Sequence[str]) -> str | None:
        items = [c for c in choices if ":" in c] or ["torchvision:resnet50"]
        name, ok = QInputDialog.getItem(
            parent,
            "Which architecture?",
            f"{Path(path).name} holds weights only.\nChoose the architecture they belong to "
            "(or type a source such as torchvision:resnet50):",
            items,
            0,
            True,
        )
        return name.strip() if ok and name.strip() else None


class TrustPrompt:
    """A pickle file: loading it can run code. Load anyway?"""

    @classmethod
    def ask(cls, parent: QWidget | None, path: str) -> bool:
        answer = QMessageBox.warning(
            parent,
            "Load a pickled model?",
            f"{Path(path).name} contains pickled Python objects, which can run arbitrary code "
            "when loaded. Load it only if you trust where it came from.\n\nLoad it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes


class SaveRunPrompt:
    """Where to copy the run folder."""

    @classmethod
    def ask(cls, parent: QWidget | None, suggestion: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(parent, "Save run as", suggestion, "Run folder (*)")
        return path or None


class ExportPrompt:
    """Format and file for an export: ``(format, path)``."""

    FILTERS = {"onnx": "ONNX model (*.onnx)", "torchscript": "TorchScript model (*.pt)"}

    @classmethod
    def ask(cls, parent: QWidget | None, suggestion: str) -> tuple[str, str] | None:
        filters = ";;".join(cls.FILTERS.values())
        path, chosen = QFileDialog.getSaveFileName(parent, "Export model", suggestion, filters)
        if not path:
            return None
        fmt = next((key for key, text in cls.FILTERS.items() if text == chosen), None)
        if fmt is None:
            fmt = "torchscript" if path.lower().endswith((".pt", ".pth")) else "onnx"
        return fmt, path


class ClusterFolderPrompt:
    """Where to write a cluster job (config, torchrun and sbatch scripts)."""

    @classmethod
    def ask(cls, parent: QWidget | None, start: str = "") -> str | None:
        path = QFileDialog.getExistingDirectory(parent, "Folder for the cluster job", start)
        return path or None


class OpenModelPrompt:
    @classmethod
    def ask(cls, parent: QWidget | None, start: str = "") -> str | None:
        path, _ = QFileDialog.getOpenFileName(
            parent, "Open model", start,
            "Models (*.safetensors *.pt *.pth *.bin *.ckpt headswap.json);;All files (*)",
        )
        return path or None
