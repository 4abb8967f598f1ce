""""Check labels": find the training images most likely mislabelled, and fix them.

*Check labels* runs ``core.label_issues.find_label_issues`` for the loaded model and the Data
page's folder on a worker thread, under the window's model lease (as Try it's jobs do), with
its progress shown and a Stop button. The ranked images fill a gallery: thumbnail, given →
suggested class, score, and a mark on those confident learning flags.

Fixing is two steps, so nothing happens to the folder by surprise. Each action on the
selected images — *Move to class ▸* (the suggested class first), *Exclude from training*,
*Move to trash* — only adds to the page's plan of pending changes (a
``core.label_edits.LabelEditPlan``), as a command on the window's undo stack, and is listed
beside the gallery. *Apply N changes…* lists them in a dialog (saying which cannot be undone)
and only then changes the folder; the applying is itself an undoable command, whose undo
moves files back and takes exclusions off the list. After applying, the window scans the
folder again and *Retrain* starts a run with the Train page's settings in one click.
:meth:`CheckLabelsPanel.queue_moves` is the entry point for other pages (the embedding map's
lasso) that relabel images.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPixmap, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QMenu,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.data import DatasetInfo, printable_path
from headswap_gui.core.events import Note, Progress
from headswap_gui.core.label_edits import (
    AppliedEdit,
    LabelEdit,
    LabelEditError,
    LabelEditPlan,
    LabelEditReport,
    apply_plan,
    check_plan,
    revert_edits,
)
from headswap_gui.core.label_issues import (
    FEATURES_STAGE,
    LabelCheckFinished,
    LabelCheckStarted,
    LabelIssue,
    LabelIssuesInfo,
    find_label_issues,
)
from headswap_gui.gui.buttons import push_button
from headswap_gui.gui.jobs import ModelLease, leased
from headswap_gui.gui.progress_bar import ProgressBar
from headswap_gui.gui.thumbnails import Thumbnail, ThumbnailLoader, fit_pixmap, placeholder_pixmap
from headswap_gui.gui.worker import GeneratorRunner

__all__ = ["ApplyLabelEditsCommand", "ApplyLabelEditsDialog", "CheckLabelsPanel", "LabelPlanCommand"]

_THUMB = 96
_CELL = QSize(168, _THUMB + 70)
LOWEST_SHOWN = 100
"""The "lowest scores" view shows this many images: enough to browse, few enough to decode."""
_ISSUE_ROLE = int(Qt.ItemDataRole.UserRole) + 1
_STATE_ROLE = int(Qt.ItemDataRole.UserRole) + 2  # what is pending or was done for the image, for people


class _IssueListModel(QAbstractListModel):
    """The shown issues, worst first, with their thumbnails and what is pending or done."""

    def __init__(self, panel: CheckLabelsPanel) -> None:
        super().__init__(panel)
        self._panel = panel
        self._issues: list[LabelIssue] = []
        self._thumbs: dict[str, Thumbnail] = {}
        self._pixmaps: dict[str, QPixmap] = {}

    def set_issues(self, issues: Sequence[LabelIssue]) -> None:
        self.beginResetModel()
        self._issues = list(issues)
        self._pixmaps.clear()
        self.endResetModel()

    def issues(self) -> list[LabelIssue]:
        return list(self._issues)

    def issue(self, row: int) -> LabelIssue:
        return self._issues[row]

    def set_thumbnails(self, items: Iterable[Thumbnail]) -> None:
        for item in items:
            self._thumbs[item.path] = item
            self._pixmaps.pop(item.path, None)
        self.states_changed()

    def forget_pixmaps(self) -> None:
        self._pixmaps.clear()
        self.states_changed()

    def states_changed(self) -> None:
        if self._issues:
            self.dataChanged.emit(self.index(0), self.index(len(self._issues) - 1))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._issues)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        issue = self._issues[index.row()]
        if role == _ISSUE_ROLE:
            return issue
        if role == _STATE_ROLE:
            return self._panel.state_text(issue.path)
        if role == Qt.ItemDataRole.DisplayRole:
            return Path(issue.path).name
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self._pixmaps.get(issue.path)
            if pixmap is None:
                thumb = self._thumbs.get(issue.path)
                if thumb is None or thumb.image is None:
                    pixmap = placeholder_pixmap(_THUMB, self._panel.palette(), broken=thumb is not None)
                else:
                    pixmap = fit_pixmap(thumb.image, _THUMB)
                self._pixmaps[issue.path] = pixmap
            return pixmap
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            lines = [printable_path(issue.path), _verdict(issue)]
            state = self._panel.state_text(issue.path)
            if state:
                lines.append(state)
            return "\n".join(lines)
        return None


def _verdict(issue: LabelIssue) -> str:
    """"labelled 3, looks like 8 (score 0.02, flagged)" or the broken file's reason."""
    if issue.kind == "broken":
        return f"{issue.given_label}: broken file ({issue.reason})"
    flag = ", flagged" if issue.flagged else ""
    return f"labelled {issue.given_label}, looks like {issue.suggested_label} (score {issue.score:.2f}{flag})"


def _flag_color(palette: QPalette) -> QColor:
    """Red-orange, readable on the light and the dark theme."""
    return QColor("#ff8a65") if palette.color(QPalette.ColorRole.Base).lightness() < 128 else QColor("#c62828")


def _pending_color(palette: QPalette) -> QColor:
    return QColor("#64b5f6") if palette.color(QPalette.ColorRole.Base).lightness() < 128 else QColor("#1565c0")


class _IssueDelegate(QStyledItemDelegate):
    """A gallery cell: thumbnail; given → suggested; score and the flag; what is pending."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt override
        line = option.fontMetrics.height()
        return QSize(_CELL.width(), _THUMB + 3 * (line + 2) + 14)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        rect = option.rect.adjusted(3, 3, -3, -3)
        if selected:
            painter.fillRect(rect, palette.color(QPalette.ColorRole.Highlight))
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        issue: LabelIssue = index.data(_ISSUE_ROLE)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap):
            painter.drawPixmap(rect.left() + (rect.width() - _THUMB) // 2, rect.top() + 4, pixmap)
        if issue.flagged:  # a corner mark on the thumbnail, so flagged images stand out at a glance
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_flag_color(palette))
            x = rect.left() + (rect.width() + _THUMB) // 2
            painter.drawPolygon([QPoint(x - 18, rect.top() + 4), QPoint(x, rect.top() + 4), QPoint(x, rect.top() + 22)])
        fm = QFontMetrics(option.font)
        line = fm.height()
        y = rect.top() + _THUMB + 8
        width = rect.width() - 4
        bold = QFont(option.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text_color)
        if issue.kind == "broken":
            title = f"{issue.given_label} · broken"
        else:
            title = f"{issue.given_label} → {issue.suggested_label}"
        painter.drawText(QRect(rect.left() + 2, y, width, line), Qt.AlignmentFlag.AlignHCenter,
                         QFontMetrics(bold).elidedText(title, Qt.TextElideMode.ElideRight, width))
        y += line + 2
        painter.setFont(option.font)
        detail = issue.reason if issue.kind == "broken" else f"score {issue.score:.2f}"
        if issue.flagged:
            detail += " · flagged"
            if not selected:
                painter.setPen(_flag_color(palette))
        painter.drawText(QRect(rect.left() + 2, y, width, line), Qt.AlignmentFlag.AlignHCenter,
                         fm.elidedText(detail, Qt.TextElideMode.ElideRight, width))
        y += line + 2
        state = index.data(_STATE_ROLE)
        painter.setPen(text_color if selected or not state else _pending_color(palette))
        painter.drawText(QRect(rect.left() + 2, y, width, line), Qt.AlignmentFlag.AlignHCenter,
                         fm.elidedText(state or str(index.data()), Qt.TextElideMode.ElideMiddle, width))
        painter.restore()


class LabelPlanCommand(QUndoCommand):
    """A change of the page's pending plan (changes queued or taken off the list); undo puts
    the plan back as it was. Nothing on disk changes."""

    def __init__(self, panel: CheckLabelsPanel, before: LabelEditPlan | None, after: LabelEditPlan, text: str) -> None:
        super().__init__(text)
        self._panel, self._before, self._after = panel, before, after

    def redo(self) -> None:
        self._panel.set_plan(self._after)

    def undo(self) -> None:
        self._panel.set_plan(self._before)


class ApplyLabelEditsCommand(QUndoCommand):
    """Apply the pending plan to the folder; undo moves the files back and takes the
    exclusions off the list (trashed files stay in the trash, as the dialog said).

    When the plan cannot be applied at all, :attr:`error` says why and the command makes
    itself obsolete, so the stack drops it; the same when an undo cannot be carried out."""

    def __init__(self, panel: CheckLabelsPanel, plan: LabelEditPlan) -> None:
        super().__init__(panel.tr("Apply {changes}").format(changes=_n(len(plan), "label change")))
        self._panel = panel
        self._plan = plan
        self._report: LabelEditReport | None = None
        self.error: str | None = None

    @property
    def report(self) -> LabelEditReport | None:
        return self._report

    def redo(self) -> None:
        try:
            report = apply_plan(self._plan)
        except LabelEditError as error:
            self.error = str(error)
            self.setObsolete(True)
            self._panel.edits_failed(error.problems)
            return
        self._report = report
        done = [applied.edit.path for applied in report.done]
        self._panel.edits_applied(report, self._plan.without(done))

    def undo(self) -> None:
        report = self._report
        assert report is not None
        try:
            undone = revert_edits(report)
        except LabelEditError as error:
            self.error = str(error)
            self.setObsolete(True)
            self._panel.edits_failed(error.problems, undo=True)
            return
        if not undone.complete:
            self.setObsolete(True)  # partly undone: a redo could not tell what to do again
        # Trashed files cannot come back, so they are not pending again; a redo applies the rest.
        self._plan = self._plan.without(applied.edit.path for applied in undone.kept)
        self._panel.edits_reverted(undone, self._plan, report)


class ApplyLabelEditsDialog(QDialog):
    """Lists the pending changes and asks to apply them; says which cannot be undone."""

    def __init__(self, parent: QWidget | None, plan: LabelEditPlan) -> None:
        super().__init__(parent)
        self.setObjectName("applyLabelEditsDialog")
        self.setWindowTitle(self.tr("Apply label changes"))
        intro = QLabel(
            self.tr("These changes are made in <b>{root}</b>:").format(root=html.escape(printable_path(plan.root))), self
        )
        intro.setWordWrap(True)
        self.changes = QListWidget(self)
        self.changes.setObjectName("applyChangesList")
        self.changes.setAccessibleName(self.tr("Changes to apply"))
        self.changes.addItems([_pending_line(plan, edit) for edit in plan.edits])
        trashed = len(plan.irreversible)
        self.warning = QLabel(self)
        self.warning.setObjectName("applyWarningLabel")
        self.warning.setWordWrap(True)
        if trashed:
            self.warning.setText(self.tr(
                "<b>{files} to the desktop's trash. Undo cannot bring {them} back</b>: restore {them} from the "
                "trash yourself if you change your mind. Moves and exclusions can be undone (Ctrl+Z)."
            ).format(files=_n(trashed, "file") + (" goes" if trashed == 1 else " go"), them="it" if trashed == 1 else "them"))
        else:
            self.warning.setText(self.tr("Every change can be undone afterwards with Edit ▸ Undo (Ctrl+Z)."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.apply_button = buttons.addButton(
            self.tr("Apply {changes}").format(changes=_n(len(plan), "change")), QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_button.setObjectName("confirmApplyButton")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.changes, 1)
        layout.addWidget(self.warning)
        layout.addWidget(buttons)
        self.resize(520, 360)

    @classmethod
    def ask(cls, parent: QWidget | None, plan: LabelEditPlan) -> bool:
        """Show the dialog modally; True when the user applies. Tests monkeypatch this."""
        return cls(parent, plan).exec() == QDialog.DialogCode.Accepted


def _n(count: int, noun: str) -> str:
    """"1 image", "3 images": the page's counts in plain English (no translator is loaded)."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _pending_line(plan: LabelEditPlan, edit: LabelEdit) -> str:
    text = plan.describe(edit)
    return text + "  (cannot be undone)" if edit.action == "trash" else text


class CheckLabelsPanel(QWidget):
    """The "Check labels" page. It uses the window's ``undo_stack`` for every change.

    Signals: ``imageActivated(str)`` (show an image large), ``checkFinished(object)`` (once
    the check's thread has ended: its ``LabelCheckFinished`` event, or None when it failed or
    was stopped), ``planChanged()``,
    ``editsApplied(object)`` (the ``LabelEditReport`` of an apply or an undo of one),
    ``rescanRequested(str)`` (the folder changed on disk: scan it again), ``retrainRequested()``.
    """

    imageActivated = Signal(str)
    checkFinished = Signal(object)
    planChanged = Signal()
    editsApplied = Signal(object)
    rescanRequested = Signal(str)
    retrainRequested = Signal()

    def __init__(self, undo_stack: QUndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("checkLabelsPanel")
        self.setAccessibleName(self.tr("Check labels"))
        self.undo_stack = undo_stack
        self.model_lease: ModelLease | None = None  # the window's: the check waits its turn on the model
        self._loaded: Any = None
        self._dataset: DatasetInfo | None = None
        self._info: LabelIssuesInfo | None = None
        self._checked_root: str | None = None  # the folder the ranking (or the running check) is of
        self._message = ""  # the last thing the check or an action said, under the buttons
        self._plan: LabelEditPlan | None = None
        self._applied: dict[str, AppliedEdit] = {}  # original path -> what was done to it
        self._runner: GeneratorRunner | None = None
        self._finished: LabelCheckFinished | None = None  # the running check's last word
        self._can_train = False
        self._model = _IssueListModel(self)
        self._thumbnails = ThumbnailLoader(size=_THUMB, parent=self)
        self._thumbnails.thumbnailsReady.connect(self._on_thumbnails_thumbnailsReady)
        self._build()
        self._update()

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._check_button = push_button(
            self, self.tr("Check labels"), name="checkLabelsButton",
            accessible=self.tr("Find the images most likely mislabelled"),
            tooltip=self.tr(
                "Rank the training images by how likely their label is wrong: the model's backbone describes each "
                "image, and a classifier that never saw the image predicts its class (5-fold)"),
            on_click=self._on_check_button_clicked,
        )
        self._stop_button = push_button(
            self, self.tr("Stop"), name="stopCheckButton", accessible=self.tr("Stop the label check"),
            on_click=self._on_stop_button_clicked,
        )
        self._progress = ProgressBar(self)
        self._progress.setObjectName("labelCheckProgressBar")
        self._progress.setAccessibleName(self.tr("Label check progress"))
        self._progress.setMaximumWidth(220)
        self._status = QLabel(self)
        self._status.setObjectName("labelCheckStatusLabel")
        self._status.setWordWrap(True)
        self._status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._show_combo = QComboBox(self)
        self._show_combo.setObjectName("issueFilterComboBox")
        self._show_combo.setAccessibleName(self.tr("Which images to show"))
        self._show_combo.currentIndexChanged.connect(self._on_show_combo_currentIndexChanged)
        self._move_button = push_button(
            self, self.tr("Move to class ▸"), name="moveToClassButton",
            accessible=self.tr("Move the selected images to another class"),
        )
        self._move_menu = QMenu(self._move_button)
        self._move_menu.setObjectName("moveToClassMenu")
        self._move_menu.aboutToShow.connect(self._on_move_menu_aboutToShow)
        self._move_menu.triggered.connect(self._on_move_menu_triggered)
        self._move_button.setMenu(self._move_menu)
        self._exclude_button = push_button(
            self, self.tr("Exclude from training"), name="excludeImagesButton",
            accessible=self.tr("Leave the selected images out of training"),
            tooltip=self.tr("Lists them in the folder's headswap-exclude.txt; the files stay"),
            on_click=self._on_exclude_button_clicked,
        )
        self._trash_button = push_button(
            self, self.tr("Move to trash"), name="trashImagesButton",
            accessible=self.tr("Move the selected images to the trash"),
            on_click=self._on_trash_button_clicked,
        )
        top = QHBoxLayout()
        top.addWidget(self._check_button)
        top.addWidget(self._stop_button)
        top.addWidget(self._progress)
        top.addWidget(self._status, 1)
        top.addWidget(self._show_combo)
        actions = QHBoxLayout()
        actions.addStretch(1)
        actions.addWidget(self._move_button)
        actions.addWidget(self._exclude_button)
        actions.addWidget(self._trash_button)

        self._view = QListView(self)
        self._view.setObjectName("labelIssueGallery")
        self._view.setAccessibleName(self.tr("Images ranked by how likely their label is wrong"))
        self._view.setModel(self._model)
        self._view.setItemDelegate(_IssueDelegate(self))
        self._view.setViewMode(QListView.ViewMode.IconMode)
        self._view.setResizeMode(QListView.ResizeMode.Adjust)
        self._view.setMovement(QListView.Movement.Static)
        self._view.setUniformItemSizes(True)
        self._view.setSpacing(2)
        self._view.setWordWrap(True)
        self._view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._view.customContextMenuRequested.connect(self._on_view_customContextMenuRequested)
        self._view.activated.connect(self._on_view_activated)
        self._view.selectionModel().selectionChanged.connect(self._update_actions)
        self._empty = QLabel(self)
        self._empty.setObjectName("labelCheckEmptyLabel")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setWordWrap(True)
        self._empty.setMargin(24)
        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._empty)
        self._stack.addWidget(self._view)

        gallery = QWidget(self)
        gallery_layout = QVBoxLayout(gallery)
        gallery_layout.setContentsMargins(0, 0, 0, 0)
        gallery_layout.addLayout(actions)
        gallery_layout.addWidget(self._stack, 1)

        self._pending_title = QLabel(self)
        self._pending_title.setObjectName("pendingTitleLabel")
        self._pending_title.setWordWrap(True)
        self._pending_list = QListWidget(self)
        self._pending_list.setObjectName("pendingChangesList")
        self._pending_list.setAccessibleName(self.tr("Pending changes to the image folder"))
        self._pending_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._pending_list.itemSelectionChanged.connect(self._update_actions)
        self._pending_title.setBuddy(self._pending_list)
        self._remove_button = push_button(
            self, self.tr("Remove from list"), name="removePendingButton",
            accessible=self.tr("Take the selected changes off the list"),
            on_click=self._on_remove_button_clicked,
        )
        self._apply_button = push_button(  # its text (the count of changes) is set as the list changes
            self, "", name="applyChangesButton",
            accessible=self.tr("Apply the pending changes to the image folder"),
            on_click=self._on_apply_button_clicked,
        )
        self._result = QLabel(self)
        self._result.setObjectName("applyResultLabel")
        self._result.setWordWrap(True)
        self._result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._result.hide()
        self._retrain_button = push_button(
            self, self.tr("Retrain"), name="retrainButton",
            accessible=self.tr("Train again on the corrected folder"),
            tooltip=self.tr("Start a run with the Train page's settings (Ctrl+Return)"),
            on_click=self._on_retrain_button_clicked,
        )
        self._retrain_button.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self._remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self._apply_button)
        after = QHBoxLayout()
        after.addWidget(self._result, 1)
        after.addWidget(self._retrain_button, 0, Qt.AlignmentFlag.AlignTop)
        pending = QWidget(self)
        pending_layout = QVBoxLayout(pending)
        pending_layout.setContentsMargins(0, 0, 0, 0)
        pending_layout.addWidget(self._pending_title)
        pending_layout.addWidget(self._pending_list, 1)
        pending_layout.addLayout(buttons)
        pending_layout.addLayout(after)

        self._splitter = QSplitter(Qt.Orientation.Vertical, self)
        self._splitter.setObjectName("checkLabelsSplitter")
        self._splitter.setChildrenCollapsible(False)
        self._splitter.addWidget(gallery)
        self._splitter.addWidget(pending)
        self._splitter.setStretchFactor(0, 3)
        self._splitter.setStretchFactor(1, 1)
        self._splitter.setSizes([750, 250])  # scaled to the page: the gallery gets three quarters
        self._pending_list.setMinimumHeight(3 * self.fontMetrics().height())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self._splitter, 1)

    # -- public API -------------------------------------------------------------------------

    def set_model(self, loaded: Any) -> None:
        """Check with ``loaded`` (a ``LoadedModel``), or nothing (``None``: no model, or a job
        owns it). The window calls this on every change of the model (a load, a head swap, a
        run), so a running check is stopped: its feature hook sits on the head it started with."""
        self.stop_check()
        self._loaded = loaded
        self._update()

    def set_dataset(self, dataset: DatasetInfo | None) -> None:
        """The Data page's folder. The ranking stays while it is the same folder (scanned
        again after applying changes), and goes when another folder is opened."""
        self._dataset = dataset
        if self._checked_root is not None and (dataset is None or dataset.root != self._checked_root):
            self.stop_check()
            self._info, self._checked_root, self._message = None, None, ""
            self._applied = {}
            self._model.set_issues([])
        self._update()

    def set_can_train(self, can_train: bool) -> None:
        """Whether Retrain can start a run now (the window's start action)."""
        self._can_train = can_train
        self._retrain_button.setEnabled(can_train)

    def can_check(self) -> bool:
        return (self._loaded is not None and not getattr(self._loaded, "structure_only", False)
                and self._dataset is not None and not self.is_checking())

    def is_checking(self) -> bool:
        return self._runner is not None and self._runner.is_running()

    def check_labels(self) -> bool:
        """Start the check for the model and the folder; False when one of them is missing."""
        if not self.can_check():
            return False
        loaded, dataset = self._loaded, self._dataset
        assert dataset is not None

        def factory(stop: threading.Event) -> Iterator[object]:
            # Called on the worker thread: a folder that does not fit the model fails there, as `failed`.
            return find_label_issues(loaded, dataset, stop=stop)

        if self.model_lease is not None:
            factory = leased(self.model_lease, "check labels", factory)
        runner = GeneratorRunner(factory, stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_runner_eventEmitted)
        runner.failed.connect(self._on_runner_failed)
        runner.finished.connect(self._on_runner_finished)
        self._runner = runner
        self._checked_root = dataset.root
        self._progress.setRange(0, 0)
        self._progress.setFormat(self.tr("waiting for the model…"))
        self._say(self.tr("Checking the labels of {root}…").format(root=dataset.root))
        runner.start()
        self._update()
        return True

    def stop_check(self) -> None:
        if self._runner is not None:
            self._runner.request_stop()  # its late events are ignored (sender check)

    def info(self) -> LabelIssuesInfo | None:
        """The ranking of the last finished check."""
        return self._info

    def shown_issues(self) -> list[LabelIssue]:
        """The images in the gallery now, in order."""
        return self._model.issues()

    def show_mode(self) -> str:
        """"flagged", "lowest" or "all"."""
        return str(self._show_combo.currentData() or "")

    def set_show_mode(self, mode: str) -> None:
        index = self._show_combo.findData(mode)
        if index >= 0:
            self._show_combo.setCurrentIndex(index)

    def select_paths(self, paths: Iterable[str]) -> None:
        """Select the gallery images of ``paths`` (the actions act on the selection)."""
        wanted = set(paths)
        selection = self._view.selectionModel()
        selection.clearSelection()
        for row, issue in enumerate(self._model.issues()):
            if issue.path in wanted:
                selection.select(self._model.index(row), selection.SelectionFlag.Select)

    def selected_paths(self) -> list[str]:
        rows = sorted(index.row() for index in self._view.selectionModel().selectedIndexes())
        return [self._model.issue(row).path for row in rows]

    def plan(self) -> LabelEditPlan | None:
        """The pending changes (None or empty: none)."""
        return self._plan

    def pending_count(self) -> int:
        return len(self._plan) if self._plan is not None else 0

    def pending_lines(self) -> list[str]:
        return [self._pending_list.item(i).text() for i in range(self._pending_list.count())]

    def queue_moves(self, paths: Sequence[str], class_name: str) -> bool:
        """Queue moving the images ``paths`` of the Data page's folder to the class folder
        ``class_name`` (one undoable step; nothing changes on disk until Apply). Returns
        False, saying why on the page, when they cannot be moved there."""
        return self._queue([LabelEdit(str(path), "move", class_name) for path in paths],
                           self.tr("Move {images} to {name}").format(images=_n(len(paths), "image"), name=class_name))

    def queue_exclusions(self, paths: Sequence[str]) -> bool:
        """Queue leaving ``paths`` out of training (listed in the folder's exclusion list)."""
        return self._queue([LabelEdit(str(path), "exclude") for path in paths],
                           self.tr("Exclude {images} from training").format(images=_n(len(paths), "image")))

    def queue_trash(self, paths: Sequence[str]) -> bool:
        """Queue moving ``paths`` to the desktop's trash."""
        return self._queue([LabelEdit(str(path), "trash") for path in paths],
                           self.tr("Move {images} to the trash").format(images=_n(len(paths), "image")))

    def remove_pending(self, paths: Sequence[str]) -> None:
        """Take the pending changes of ``paths`` off the list (undoable)."""
        if self._plan is None or not paths:
            return
        after = self._plan.without(paths)
        if len(after) != len(self._plan):
            self.undo_stack.push(LabelPlanCommand(self, self._plan, after, self.tr(
                "Take {changes} off the list").format(changes=_n(len(self._plan) - len(after), "change"))))

    def apply_changes(self) -> bool:
        """Ask (listing the changes) and apply the pending plan as one undoable step; False
        when there is nothing to apply, it cannot be applied, or the user cancels."""
        plan = self._plan
        if plan is None or not len(plan) or self.is_checking():
            return False
        problems = check_plan(plan)
        if problems:
            self.edits_failed(problems)
            return False
        if not ApplyLabelEditsDialog.ask(self, plan):
            return False
        command = ApplyLabelEditsCommand(self, plan)
        self.undo_stack.push(command)
        return command.error is None

    def status_text(self) -> str:
        """The line beside the Check labels button: progress, the check's summary, or why not."""
        return self._status.text()

    def result_text(self) -> str:
        """What the last apply or undo did (or why it could not), as shown under the list."""
        return self._result.text() if not self._result.isHidden() else ""

    def thumbnails_loading(self) -> bool:
        return self._thumbnails.is_busy()

    def retrain_offered(self) -> bool:
        return not self._retrain_button.isHidden()

    def state_text(self, path: str) -> str:
        """What is pending or was done for the image ``path``, for its gallery cell ("" none)."""
        applied = self._applied.get(path)
        if applied is not None:
            edit = applied.edit
            if edit.action == "move":
                return self.tr("moved to {name}").format(name=edit.target_class)
            return self.tr("excluded") if edit.action == "exclude" else self.tr("in the trash")
        edit = self._plan.edit_for(path) if self._plan is not None else None
        if edit is None:
            return ""
        if edit.action == "move":
            return self.tr("→ {name} (pending)").format(name=edit.target_class)
        return self.tr("exclude (pending)") if edit.action == "exclude" else self.tr("trash (pending)")

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the check and the thumbnails and wait for them (window close)."""
        self._thumbnails.cancel()
        ok = True
        if self._runner is not None:
            self._runner.request_stop()
            ok = self._runner.wait(timeout_ms)
        return self._thumbnails.close(timeout_ms) and ok

    # -- what the commands call -------------------------------------------------------------

    def set_plan(self, plan: LabelEditPlan | None) -> None:
        """Show ``plan`` as the pending changes (the undo commands call this)."""
        self._plan = plan if plan is not None and len(plan) else None
        self._pending_list.clear()
        if self._plan is not None:
            self._pending_list.addItems([_pending_line(self._plan, edit) for edit in self._plan.edits])
        self._model.states_changed()
        self._update()
        self.planChanged.emit()

    def edits_applied(self, report: LabelEditReport, remaining: LabelEditPlan) -> None:
        """The folder changed: remember what was done, keep what was not, scan again."""
        for applied in report.done:
            self._applied[applied.edit.path] = applied
        self.set_plan(remaining)
        self._show_result(report)
        self.rescanRequested.emit(report.root)
        self.editsApplied.emit(report)

    def edits_reverted(self, undone: LabelEditReport, plan: LabelEditPlan, applied: LabelEditReport) -> None:
        """An apply was undone: what came back is pending again (the trashed files are not)."""
        for item in applied.done:
            if item.edit.action != "trash":
                self._applied.pop(item.edit.path, None)
        self.set_plan(plan)
        self._show_result(undone)
        self.rescanRequested.emit(undone.root)
        self.editsApplied.emit(undone)

    def edits_failed(self, problems: Sequence[str], *, undo: bool = False) -> None:
        """Nothing was changed: say why."""
        what = self.tr("Could not undo the changes") if undo else self.tr("Nothing was changed")
        self._result.setText(f"<b>{what}</b>: " + html.escape("; ".join(problems)) + ".")
        self._result.show()

    # -- internals --------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self._message = text
        self._status.setText(text)

    def _queue(self, edits: list[LabelEdit], text: str) -> bool:
        edits = [edit for edit in edits if edit.path not in self._applied]  # done already: check again first
        if not edits:
            self._say(self.tr("Nothing to change: those images were changed already."))
            return False
        before = self._plan
        if before is None:
            if self._dataset is None:
                self._say(self.tr("Open the image folder on the Data page first."))
                return False
            base = LabelEditPlan.for_dataset(self._dataset)
        else:
            base = before
        try:
            after = base.with_edits(edits)
        except LabelEditError as error:
            self._say(self.tr("Cannot queue that: {why}.").format(why="; ".join(error.problems)))
            return False
        self.undo_stack.push(LabelPlanCommand(self, before, after, text))
        return True

    def _show_result(self, report: LabelEditReport) -> None:
        self._result.setText(html.escape(report.summary()))
        self._result.show()
        self._retrain_button.setVisible(True)
        self._retrain_button.setEnabled(self._can_train)

    def _fill_show_combo(self) -> None:
        info = self._info
        current = self.show_mode()
        self._show_combo.blockSignals(True)
        self._show_combo.clear()
        if info is not None:
            flagged = len(info.flagged)
            self._show_combo.addItem(self.tr("Flagged ({n})").format(n=f"{flagged:,}"), "flagged")
            self._show_combo.addItem(self.tr("Lowest {n} scores").format(n=min(LOWEST_SHOWN, len(info.issues))),
                                     "lowest")
            self._show_combo.addItem(self.tr("All {images}").format(images=_n(len(info.issues), "image")), "all")
            mode = current or ("flagged" if flagged else "lowest")
            self._show_combo.setCurrentIndex(max(0, self._show_combo.findData(mode)))
        self._show_combo.blockSignals(False)

    def _fill_gallery(self) -> None:
        info = self._info
        mode = self.show_mode()
        if info is None:
            issues: Sequence[LabelIssue] = ()
        elif mode == "flagged":
            issues = info.flagged
        elif mode == "lowest":
            issues = info.top(LOWEST_SHOWN)
        else:
            issues = info.issues
        self._model.set_issues(issues)
        self._thumbnails.load(issue.path for issue in issues)
        self._update()

    def _update(self) -> None:
        checking = self.is_checking()
        self._check_button.setEnabled(self.can_check())
        self._stop_button.setVisible(checking)
        self._progress.setVisible(checking)
        if checking:
            self._status.setText(self._message)
        elif self._loaded is None:
            self._status.setText(self.tr("No model: load one on the left (while a run trains, the model is busy)."))
        elif self._dataset is None:
            self._status.setText(self.tr("No image folder: open one on the Data page."))
        else:
            self._status.setText(self._message or self.tr("Ready to check {root}.").format(root=self._dataset.root))
        shown = self._model.rowCount()
        if shown:
            self._stack.setCurrentIndex(1)
        else:
            self._stack.setCurrentIndex(0)
            self._empty.setText(self._empty_text())
        self._show_combo.setEnabled(self._info is not None)
        count = self.pending_count()
        self._pending_title.setText(self.tr("Pending changes ({n}): nothing changes on disk until you apply them")
                                    .format(n=count) if count else
                                    self.tr("No pending changes: select images above and move, exclude or trash "
                                            "them."))
        self._apply_button.setText(self.tr("Apply {changes}…").format(changes=_n(count, "change")) if count else self.tr("Apply changes…"))
        self._apply_button.setEnabled(count > 0 and not checking)
        self._update_actions()

    def _empty_text(self) -> str:
        if self.is_checking():
            return self.tr("<p style='font-size:14pt'>Checking the labels…</p><p>The model describes every image "
                           "once; then classifiers that never saw an image predict its class.</p>")
        if self._info is not None:
            if self.show_mode() == "flagged":
                return self.tr("<p style='font-size:14pt'>No likely label issues.</p><p>No image confidently "
                               "belongs to another class. Choose <b>Lowest scores</b> above to see the images "
                               "whose label the check found least likely anyway.</p>")
            return self.tr("<p style='font-size:14pt'>No images to show.</p>")
        if self._loaded is None or self._dataset is None:
            return self.tr("<p style='font-size:14pt'>Find the images most likely mislabelled</p><p>Load a model "
                           "and open an image folder on the Data page, then press <b>Check labels</b>.</p>")
        return self.tr("<p style='font-size:14pt'>Press <b>Check labels</b> to rank the images of this folder by "
                       "how likely their label is wrong.</p><p>Then move an image to its right class, exclude it "
                       "from training or move it to the trash; nothing changes on disk until you apply the "
                       "changes.</p>")

    @Slot()
    def _update_actions(self, *_args: object) -> None:
        selected = bool(self._view.selectionModel().hasSelection()) if self._view.selectionModel() else False
        for button in (self._move_button, self._exclude_button, self._trash_button):
            button.setEnabled(selected)
        self._remove_button.setEnabled(bool(self._pending_list.selectedItems()))

    def _fill_move_menu(self) -> None:
        """The classes for the selection: the suggested class first, the given one left out."""
        self._move_menu.clear()
        dataset = self._dataset
        selected = [self._model.issue(i.row()) for i in self._view.selectionModel().selectedIndexes()]
        if dataset is None or not selected:
            return
        given = {issue.given_label for issue in selected}
        suggested = [issue.suggested_label for issue in selected if issue.suggested_label]
        first = max(set(suggested), key=suggested.count) if suggested else None
        names = list(dataset.class_names)
        if first in names and first not in given:
            action = self._move_menu.addAction(self.tr("{name} (suggested)").format(name=first))
            action.setData(first)
            self._move_menu.addSeparator()
        for name in names:
            if name == first or (len(given) == 1 and name in given):
                continue
            action = self._move_menu.addAction(name)
            action.setData(name)

    # -- slots ------------------------------------------------------------------------------

    @Slot()
    def _on_check_button_clicked(self) -> None:
        self.check_labels()

    @Slot()
    def _on_stop_button_clicked(self) -> None:
        self.stop_check()
        self._say(self.tr("Stopping…"))

    @Slot(object)
    def _on_runner_eventEmitted(self, event: object) -> None:
        runner = self.sender()
        if runner is not self._runner or (isinstance(runner, GeneratorRunner) and runner.stop_requested()):
            return
        if isinstance(event, LabelCheckStarted):
            broken = self.tr(" and {files}").format(files=_n(event.broken, "broken file")) if event.broken else ""
            self._say(self.tr("Checking {n} images{broken} on {device}, {folds}-fold…").format(
                n=f"{event.images:,}", broken=broken, device=event.device, folds=event.folds))
        elif isinstance(event, Progress):
            self._progress.setRange(0, max(event.total, 1))
            self._progress.setValue(event.done)
            self._progress.setFormat(self.tr("features %v / %m") if event.stage == FEATURES_STAGE
                                     else self.tr("cross-validating %v / %m"))
        elif isinstance(event, Note):
            self._say(event.message)
        elif isinstance(event, LabelCheckFinished):
            self._say(event.message[0].upper() + event.message[1:] if event.message else "")
            if event.info is not None:
                self._info = event.info
                self._applied = {}
                self._fill_show_combo()
                self._fill_gallery()
            self._finished = event

    @Slot(str)
    def _on_runner_failed(self, message: str) -> None:
        if self.sender() is not self._runner:
            return
        self._say(self.tr("The label check failed: {message}").format(message=message))

    @Slot()
    def _on_runner_finished(self) -> None:
        if self.sender() is not self._runner:
            return
        if self._runner is not None and self._runner.stop_requested():
            self._say(self.tr("Stopped; the images below are from the last check.") if self._info is not None
                      else self.tr("Stopped; nothing was checked."))
        self._runner = None
        finished, self._finished = self._finished, None
        self._update()
        self.checkFinished.emit(finished)

    @Slot(int)
    def _on_show_combo_currentIndexChanged(self, _index: int) -> None:
        self._fill_gallery()

    @Slot()
    def _on_move_menu_aboutToShow(self) -> None:
        self._fill_move_menu()

    @Slot(object)
    def _on_move_menu_triggered(self, action: Any) -> None:
        name = action.data()
        if name:
            self.queue_moves(self.selected_paths(), str(name))

    @Slot()
    def _on_exclude_button_clicked(self) -> None:
        self.queue_exclusions(self.selected_paths())

    @Slot()
    def _on_trash_button_clicked(self) -> None:
        self.queue_trash(self.selected_paths())

    @Slot()
    def _on_remove_button_clicked(self) -> None:
        plan = self._plan
        if plan is None:
            return
        rows = sorted(self._pending_list.row(item) for item in self._pending_list.selectedItems())
        self.remove_pending([plan.edits[row].path for row in rows])

    @Slot()
    def _on_apply_button_clicked(self) -> None:
        self.apply_changes()

    @Slot()
    def _on_retrain_button_clicked(self) -> None:
        self.retrainRequested.emit()

    @Slot(QPoint)
    def _on_view_customContextMenuRequested(self, position: QPoint) -> None:
        if not self._view.selectionModel().hasSelection():
            return
        menu = QMenu(self)
        menu.setObjectName("labelIssueContextMenu")
        self._fill_move_menu()
        moves = menu.addMenu(self.tr("Move to class"))
        moves.addActions(self._move_menu.actions())
        moves.triggered.connect(self._on_move_menu_triggered)
        menu.addAction(self.tr("Exclude from training"), self._on_exclude_button_clicked)
        menu.addAction(self.tr("Move to trash"), self._on_trash_button_clicked)
        menu.exec(self._view.viewport().mapToGlobal(position))
        menu.deleteLater()

    @Slot(QModelIndex)
    def _on_view_activated(self, index: QModelIndex) -> None:
        issue = self._model.issue(index.row())
        applied = self._applied.get(issue.path)
        shown = applied.target if applied is not None and applied.edit.action == "move" and applied.target else issue.path
        self.imageActivated.emit(shown)

    @Slot(object)
    def _on_thumbnails_thumbnailsReady(self, items: object) -> None:
        self._model.set_thumbnails(items)  # type: ignore[arg-type]

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._model.forget_pixmaps()
        super().changeEvent(event)
