"""Training → Run on a cluster…: the window's run as a folder a cluster can run.

The folder gets the config file (``headswap train --config FILE``: the model source, the image
folder, the head and the Train page's settings), a ``torchrun`` script and a Slurm ``sbatch``
script (see :mod:`headswap_gui.core.cluster`). The dialog then says where they are, with the
command ready to copy; nothing runs here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.cluster import ClusterJobInfo, write_cluster_job
from headswap_gui.core.heads import HeadSpec, built_heads
from headswap_gui.core.run_spec import TrainSpec
from headswap_gui.gui.buttons import push_button

__all__ = ["ClusterJobDialog", "cluster_spec", "write_job"]


def cluster_spec(window: Any, config: Any) -> TrainSpec:
    """The window's run: its model's source, its image folder, the design of the head it
    trains (the current one, if headswap built it for these classes; else the head Start
    would put in: a linear one) and ``config``."""
    loaded, dataset = window.controller.loaded, window.dataset()
    head = window.state.main_head()
    designs = built_heads(loaded.model)
    fits = head is not None and head.out_features == len(dataset.class_names) and head.path in designs
    return TrainSpec(
        source=loaded.source, data=str(dataset.root), config=config,
        head=designs[head.path] if fits else HeadSpec(),
    )


def write_job(window: Any, folder: str, config: Any) -> ClusterJobInfo:
    """Write the job folder for the window's run with ``config``."""
    return write_cluster_job(Path(folder), cluster_spec(window, config))


class ClusterJobDialog(QDialog):
    """Where the job's files are, and the command that runs it (selectable, and one button
    copies it)."""

    def __init__(self, parent: QWidget | None, job: ClusterJobInfo) -> None:
        super().__init__(parent)
        self.setObjectName("clusterJobDialog")
        self.setWindowTitle(self.tr("Run on a cluster"))
        self.job = job
        layout = QVBoxLayout(self)
        intro = QLabel(self.tr(
            "The run is ready to train under torchrun, on this machine's GPUs or on a Slurm cluster. "
            "If the cluster sees the model or the image folder under other paths, edit them in the config file."
        ))
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("clusterJobText")
        self.text.setReadOnly(True)
        self.text.setAccessibleName(self.tr("Cluster job files and command"))
        self.text.setPlainText(
            f"Config:          {job.config_file}\n"
            f"torchrun script: {job.torchrun_script}\n"
            f"Slurm script:    {job.sbatch_script}   (sbatch {job.sbatch_script})\n\n"
            f"Run it here:\n{job.command}\n"
        )
        layout.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = push_button(
            self, self.tr("Copy command"), name="copyCommandButton", accessible=self.tr("Copy the torchrun command"),
        )
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self._on_copy_button_clicked)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(760, 300)

    def _on_copy_button_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.job.command)
