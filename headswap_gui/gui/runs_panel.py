"""The Runs page: every training run in the runs folder — the same list `headswap runs`
prints — to reopen (model, curves and results come back) or to resume.

A view over :func:`core.run_index.list_runs`; it holds no state of its own beyond the rows
it shows and says what the user asked for through its signals.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.run_index import RunSummary, default_runs_root, list_runs
from headswap_gui.gui.buttons import push_button

RESUMABLE = frozenset({"stopped", "interrupted", "failed", "unfinished"})
_COLUMNS = ("Started", "Status", "Model", "Data", "Classes", "Epochs", "Best val acc")
_FOLDER_ROLE = int(Qt.ItemDataRole.UserRole) + 1


class RunsPanel(QWidget):
    """A table of runs with Open, Resume, Compare and Refresh.

    Signals: ``openRequested(str)``, ``resumeRequested(str)`` and ``compareRequested(str)``
    (overlay its curves on the Train page) carry a run folder.
    """

    openRequested = Signal(str)
    resumeRequested = Signal(str)
    compareRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None, root: str | os.PathLike[str] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runsPanel")
        self.setAccessibleName(self.tr("Training runs"))
        self._root = Path(root) if root is not None else default_runs_root()
        self._runs: list[RunSummary] = []
        self._busy = False

        self._where = QLabel(self)
        self._where.setObjectName("runsFolderLabel")
        self._where.setAccessibleName(self.tr("Where runs are saved"))
        self._where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._where.setWordWrap(True)

        self.table = QTableWidget(0, len(_COLUMNS), self)
        self.table.setObjectName("runsTable")
        self.table.setAccessibleName(self.tr("Runs, newest first"))
        self.table.setHorizontalHeaderLabels([self.tr(c) for c in _COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self._on_open_button_clicked())

        self.open_button = self._button("runsOpenButton", self.tr("&Open"), self.tr("Load this run's model, curves and results"))
        self.resume_button = self._button("runsResumeButton", self.tr("&Resume"), self.tr("Continue this run from its last finished epoch"))
        self.compare_button = self._button(
            "runsCompareButton", self.tr("&Compare"), self.tr("Draw this run's validation curves beside the current ones")
        )
        self.refresh_button = self._button("runsRefreshButton", self.tr("Re&fresh"), self.tr("Read the runs folder again"))
        self.compare_button.clicked.connect(self._on_compare_button_clicked)
        self.open_button.clicked.connect(self._on_open_button_clicked)
        self.resume_button.clicked.connect(self._on_resume_button_clicked)
        self.refresh_button.clicked.connect(self.refresh)

        self._empty = QLabel(self.tr("No runs yet. Every training run is saved here; train a model on the Train page."), self)
        self._empty.setObjectName("runsEmptyLabel")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setWordWrap(True)

        buttons = QHBoxLayout()
        for button in (self.open_button, self.resume_button, self.compare_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self._where)
        layout.addWidget(self.table, 1)
        layout.addWidget(self._empty, 1)
        layout.addLayout(buttons)
        self.refresh()

    # -- public API -------------------------------------------------------------------------

    def set_root(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Read the runs folder again (reading manifests only: fast, and never takes a lock)."""
        selected = self.selected_folder()
        self._runs = list_runs(self._root)
        self._where.setText(self.tr("Runs are saved in {root}").format(root=self._root))
        self.table.setRowCount(len(self._runs))
        for row, run in enumerate(self._runs):
            for column, text in enumerate(_cells(run)):
                item = QTableWidgetItem(text)
                item.setData(_FOLDER_ROLE, run.folder)
                if run.problem:
                    item.setToolTip(run.problem)
                else:
                    item.setToolTip(run.folder)
                self.table.setItem(row, column, item)
            if run.folder == selected:
                self.table.selectRow(row)
        self.table.setVisible(bool(self._runs))
        self._empty.setVisible(not self._runs)
        self._update_buttons()

    def runs(self) -> list[RunSummary]:
        return list(self._runs)

    def selected_folder(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(_FOLDER_ROLE) if item is not None else None

    def select_folder(self, folder: str | os.PathLike[str]) -> bool:
        for row, run in enumerate(self._runs):
            if run.folder == os.fspath(folder):
                self.table.selectRow(row)
                return True
        return False

    def set_busy(self, busy: bool) -> None:
        """While a job uses the model, runs can be looked at but not opened or resumed."""
        self._busy = busy
        self._update_buttons()

    # -- slots ------------------------------------------------------------------------------

    @Slot()
    def _on_open_button_clicked(self) -> None:
        folder = self.selected_folder()
        if folder and self.open_button.isEnabled():
            self.openRequested.emit(folder)

    @Slot()
    def _on_resume_button_clicked(self) -> None:
        folder = self.selected_folder()
        if folder and self.resume_button.isEnabled():
            self.resumeRequested.emit(folder)

    @Slot()
    def _on_compare_button_clicked(self) -> None:
        folder = self.selected_folder()
        if folder and self.compare_button.isEnabled():
            self.compareRequested.emit(folder)

    def _update_buttons(self) -> None:
        folder = self.selected_folder()
        run = next((r for r in self._runs if r.folder == folder), None)
        idle = not self._busy
        self.open_button.setEnabled(idle and run is not None and run.status not in ("damaged", "running"))
        self.resume_button.setEnabled(idle and run is not None and run.status in RESUMABLE)
        self.compare_button.setEnabled(run is not None and run.epochs_done > 0)

    def _button(self, name: str, text: str, tip: str) -> QPushButton:
        return push_button(self, text, name=name, accessible=text.replace("&", ""), tooltip=tip)


def _cells(run: RunSummary) -> list[str]:
    epochs = f"{run.epochs_done}/{run.epochs_planned}" if run.epochs_planned else str(run.epochs_done)
    best = f"{run.best_val_accuracy:.1%}" if run.best_val_accuracy is not None else "–"
    started = (run.started_at or "")[:19].replace("T", " ")
    data = Path(run.dataset_root).name if run.dataset_root else "–"
    return [started, run.status, run.source or "?", data, str(len(run.class_names)) if run.class_names else "–", epochs, best]
