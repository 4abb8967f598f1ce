"""The main window: model on the left; Data, Train, Results, Try it and Runs pages on the right.

The window is composition. The state is a :class:`WorkbenchState` (no Qt) whose model fields
:class:`ModelController` writes; every background job goes through one :class:`JobManager`,
which also hands out the model lease; loading, training and evaluating, and reopening runs are
:class:`LoadController`, :class:`TrainingController` and :class:`RunController`. The window
builds the menus and pages, routes intents from the pages to the controllers, and applies the
action table (``actions.action_states``) whenever the state or the jobs change.

Start-up is two-phase so the window paints within a moment of launch: nothing on this
module's import path imports torch, torchvision, timm or pyqtgraph. With
``defer_panels=True`` the pages start as placeholders; :meth:`MainWindow.start_up` then
imports the heavy modules on a worker thread and builds the real pages when that is done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from headswap_gui import __version__
from headswap_gui.gui.actions import WorkbenchFacts, action_states
from headswap_gui.gui.commands import ModelController, SetHeadsCommand, SwapHeadCommand
from headswap_gui.gui.drops import (
    MODEL_FOLDER_MARKER,
    DropRouter,
    classify_paths,
    image_paths,
    local_paths,
    model_path,
    training_folder,
)
from headswap_gui.gui.export_controller import ExportController
from headswap_gui.gui.image_viewer import ImageViewer
from headswap_gui.gui.job_events import JobDone, LoadStage, demo_data_events, warm_up_events
from headswap_gui.gui.job_manager import JobManager
from headswap_gui.gui.load_controller import LoadController
from headswap_gui.gui.messages import explain
from headswap_gui.gui.model_panel import ModelPanel
from headswap_gui.gui.prompts import (
    OpenModelPrompt,
    ReplaceTrainedHeadQuestion,
    StopTrainingQuestion,
)
from headswap_gui.gui.run_controller import RunController
from headswap_gui.gui.settings import AppSettings
from headswap_gui.gui.state import WorkbenchState
from headswap_gui.gui.training_controller import TrainingController
from headswap_gui.gui.wheel_guard import guard_wheel

if TYPE_CHECKING:
    from headswap_gui.core.data import DatasetInfo

__all__ = ["DEMO_TRAIN_SETTINGS", "MainWindow"]

DEMO_TRAIN_SETTINGS: dict[str, Any] = {
    # 8×8 digits upscaled: 64 px is plenty and keeps the one-time feature pass short on a CPU;
    # a frozen backbone with cached features trains the new head in seconds per epoch.
    "epochs": 5,
    "batch_size": 32,
    "lr": 1e-2,
    "freeze": "head",
    "augment": "none",
    "image_size": 64,
    "schedule": "cosine",
    "warmup_epochs": 0.0,
}

_CLOSE_WAIT_MS = 30_000
_DEFAULT_SIZE = (1400, 900)  # where the screen has room
_MODEL_PANE_SHARE = 38  # per cent of the width for the model tree
_TAB_DATA, _TAB_TRAIN, _TAB_RESULTS, _TAB_TRY, _TAB_RUNS = "data", "train", "results", "try", "runs"
_TAB_LABELS = "labels"
_TAB_MAP = "map"


class MainWindow(QMainWindow):
    """The headswap workbench.

    Signals: ``modelLoaded(object)`` (a LoadedModel), ``modelLoadFailed(str)``,
    ``panelsReady()``, ``trainingStarted()``, ``trainingFinished(object)`` (the RunFinished
    event or None), ``resultsReady(object)`` (an :class:`Evaluation`), ``errorShown(str)``,
    ``busyChanged(bool)``.
    """

    modelLoaded = Signal(object)
    modelLoadFailed = Signal(str)
    panelsReady = Signal()
    trainingStarted = Signal()
    trainingFinished = Signal(object)
    resultsReady = Signal(object)
    closed = Signal()  # the window was closed and its jobs have ended
    errorShown = Signal(str)
    busyChanged = Signal(bool)
    demoDataReady = Signal(object)

    def __init__(
        self,
        *,
        settings: AppSettings | None = None,
        runs_root: str | os.PathLike[str] | None = None,
        defer_panels: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setAccessibleName("headswap")
        self.setWindowTitle("headswap")
        self.setAcceptDrops(True)
        self.settings = settings or AppSettings()
        self._runs_root = Path(runs_root) if runs_root is not None else None
        self.state = WorkbenchState()
        self.controller = ModelController(self, self.state)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setObjectName("undoStack")
        self.jobs = JobManager(self)
        self.model_lease = self.jobs.lease  # train, evaluate, export and predict take turns on the model
        self._panels_built = False
        self._pending: list[Callable[[], None]] = []
        self._closing = False
        self._device_text = ""
        self.last_error: str | None = None
        self.demo_data_dir: str | None = None  # None: core's default folder in the user data dir
        self._image_viewer: ImageViewer | None = None  # made on the first double-clicked image
        self.data_panel: Any = None
        self.training_panel: Any = None
        self.plots_view: Any = None
        self.results_panel: Any = None
        self.try_panel: Any = None
        self.labels_panel: Any = None
        self.map_panel: Any = None
        self.runs_panel: Any = None
        self.loads = LoadController(self)
        self.training = TrainingController(self, self._runs_root)
        self.runs = RunController(self)  # reopening, resuming and comparing saved runs
        self.exports = ExportController(self)  # run copies and TorchScript / ONNX files
        self._drop_router = DropRouter(self)

        self._build_actions()
        self._build_menus()
        self._build_central()
        self._build_status_bar()
        self._connect()
        self._restore_layout()
        self.model_panel.set_recent_models(self.settings.recent_models())
        self._update_recent_menu()
        self._update_actions()
        if not defer_panels:
            self.build_panels()

    # ================================================================== construction ======

    def _action(self, name: str, text: str, shortcut: Any = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        self.addAction(action)  # shortcuts work wherever the focus is
        return action

    def _build_actions(self) -> None:
        self.open_model_action = self._action(
            "openModelAction", self.tr("&Open model…"), QKeySequence.StandardKey.Open,
            self.tr("Open a model file (.safetensors, .pt, .pth) or a headswap model folder"),
        )
        self.open_folder_action = self._action(
            "openFolderAction", self.tr("Open &image folder…"), "Ctrl+Shift+O",
            self.tr("Choose the training images: one subfolder per class"),
        )
        self.save_run_action = self._action(
            "saveRunAction", self.tr("&Save run as…"), QKeySequence.StandardKey.Save,
            self.tr("Copy the last training run (weights, metadata, metrics) to a folder of your choice"),
        )
        self.export_action = self._action(
            "exportAction", self.tr("&Export TorchScript/ONNX…"), "Ctrl+E",
            self.tr("Export the model for deployment"),
        )
        self.quit_action = self._action("quitAction", self.tr("&Quit"), QKeySequence.StandardKey.Quit)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.undo_action = self._action("undoAction", self.tr("&Undo"), QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("redoAction", self.tr("&Redo"), "Ctrl+Shift+Z")
        redo_keys = [QKeySequence("Ctrl+Shift+Z")]
        redo_keys += [k for k in QKeySequence.keyBindings(QKeySequence.StandardKey.Redo) if k not in redo_keys]
        self.redo_action.setShortcuts(redo_keys)  # and Ctrl+Y where that is the platform's redo
        self.replace_head_action = self._action(
            "replaceHeadAction", self.tr("Replace &head…"), "Ctrl+H",
            self.tr("Replace the classifier head: number of classes, names and design"),
        )
        self.show_head_action = self._action("showHeadAction", self.tr("Show the head in the tree"), "Ctrl+J")
        self.start_action = self._action(
            "startTrainingAction", self.tr("&Start training"), "Ctrl+Return",
            self.tr("Train the model on the image folder with the settings on the Train page"),
        )
        self.stop_action = self._action(
            "stopTrainingAction", self.tr("S&top training"), "Esc",
            self.tr("Stop after the current step; the best epoch so far is kept"),
        )
        self.cluster_action = self._action(
            "runOnClusterAction", self.tr("Run on a &cluster…"), None,
            self.tr("Write this run as a config file with a torchrun command and a Slurm script, for more GPUs"),
        )
        self.model_pane_action = self._action(
            "modelPaneAction", self.tr("&Model pane"), "Ctrl+B",
            self.tr("Show or hide the model and its layers on the left, for more room on a small screen"),
        )
        self.model_pane_action.setCheckable(True)
        self.model_pane_action.setChecked(True)
        self.page_actions = []
        for number, (key, title) in enumerate(
            ((_TAB_DATA, self.tr("&Data")), (_TAB_TRAIN, self.tr("&Train")), (_TAB_RESULTS, self.tr("&Results")),
             (_TAB_LABELS, self.tr("Check &labels")),
             (_TAB_MAP, self.tr("Ma&p")),
             (_TAB_TRY, self.tr("Tr&y it")), (_TAB_RUNS, self.tr("Ru&ns"))),
            start=1,
        ):
            action = self._action(f"{key}PageAction", self.tr("%1 page").replace("%1", title), f"Ctrl+{number}")
            action.setData(key)
            self.page_actions.append(action)
        self.shortcuts_action = self._action(
            "shortcutsAction", self.tr("&Keyboard shortcuts"), QKeySequence.StandardKey.HelpContents
        )
        self.about_action = self._action("aboutAction", self.tr("&About headswap"))
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.editing_actions = (self.open_model_action, self.replace_head_action, self.undo_action, self.redo_action)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu(self.tr("&File"))
        file_menu.setObjectName("fileMenu")
        file_menu.addAction(self.open_model_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu(self.tr("Open &recent"))
        self.recent_menu.setObjectName("recentMenu")
        file_menu.addSeparator()
        file_menu.addAction(self.save_run_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = bar.addMenu(self.tr("&Edit"))
        edit_menu.setObjectName("editMenu")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.replace_head_action)
        edit_menu.addAction(self.show_head_action)
        train_menu = bar.addMenu(self.tr("&Training"))
        train_menu.setObjectName("trainingMenu")
        train_menu.addAction(self.start_action)
        train_menu.addAction(self.stop_action)
        train_menu.addSeparator()
        train_menu.addAction(self.cluster_action)
        view_menu = bar.addMenu(self.tr("&View"))
        view_menu.setObjectName("viewMenu")
        view_menu.addAction(self.model_pane_action)
        view_menu.addSeparator()
        for action in self.page_actions:
            view_menu.addAction(action)
        help_menu = bar.addMenu(self.tr("&Help"))
        help_menu.setObjectName("helpMenu")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def _build_central(self) -> None:
        self.model_panel = ModelPanel(self.controller, self)
        self.model_panel.model_lease = self.model_lease
        self.tabs = QTabWidget()
        self.tabs.setObjectName("pageTabs")
        self.tabs.setAccessibleName(self.tr("Pages"))
        self.tabs.setDocumentMode(True)
        self._tab_keys: list[str] = []
        for key, title in (
            (_TAB_DATA, self.tr("Data")),
            (_TAB_TRAIN, self.tr("Train")),
            (_TAB_RESULTS, self.tr("Results")),
            (_TAB_LABELS, self.tr("Check labels")),
            (_TAB_MAP, self.tr("Map")),
            (_TAB_TRY, self.tr("Try it")),
            (_TAB_RUNS, self.tr("Runs")),
        ):
            self.tabs.addTab(self._placeholder(self.tr("Loading…")), title)
            self._tab_keys.append(key)
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("mainSplitter")
        self.main_splitter.addWidget(self.model_panel)
        self.main_splitter.addWidget(self.tabs)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setChildrenCollapsible(False)
        self.main_splitter.setCollapsible(0, True)  # View → Model pane, or drag it shut
        self._model_pane_width = 0  # its width before it was folded away
        self.main_splitter.splitterMoved.connect(self._sync_model_pane_action)
        self.main_splitter.setSizes([_MODEL_PANE_SHARE, 100 - _MODEL_PANE_SHARE])
        container = QWidget()
        layout = QVBoxLayout(container)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.main_splitter)
        self.setCentralWidget(container)
        self._fit_to_screen(_DEFAULT_SIZE)

    @staticmethod
    def _placeholder(text: str) -> QWidget:
        page = QWidget()
        label = QLabel(text, page)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        layout = QVBoxLayout(page)
        layout.addWidget(label)
        return page

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        bar.setObjectName("statusBar")
        self.status_model_label = QLabel(self.tr("No model"))
        self.status_model_label.setObjectName("statusModelLabel")
        self.status_params_label = QLabel("")
        self.status_params_label.setObjectName("statusParamsLabel")
        self.status_device_label = QLabel("")
        self.status_device_label.setObjectName("statusDeviceLabel")
        for label in (self.status_model_label, self.status_params_label, self.status_device_label):
            label.setContentsMargins(8, 0, 8, 0)
            bar.addPermanentWidget(label)

    def _connect(self) -> None:
        self.open_model_action.triggered.connect(self._on_open_model_action_triggered)
        self.open_folder_action.triggered.connect(self._on_open_folder_action_triggered)
        self.save_run_action.triggered.connect(self._on_save_run_action_triggered)
        self.export_action.triggered.connect(self._on_export_action_triggered)
        self.quit_action.triggered.connect(self.close)
        self.undo_action.triggered.connect(self._on_undo_action_triggered)
        self.redo_action.triggered.connect(self._on_redo_action_triggered)
        self.replace_head_action.triggered.connect(self.open_head_dialog)
        self.show_head_action.triggered.connect(self.model_panel.focus_head)
        self.start_action.triggered.connect(self._on_start_action_triggered)
        self.stop_action.triggered.connect(self.stop_training)
        self.cluster_action.triggered.connect(self._on_cluster_action_triggered)
        self.about_action.triggered.connect(self._on_about_action_triggered)
        self.shortcuts_action.triggered.connect(self.show_shortcuts)
        self.model_pane_action.toggled.connect(self.set_model_pane_visible)
        for action in self.page_actions:
            action.triggered.connect(self._on_page_action_triggered)
        self.undo_stack.canUndoChanged.connect(self._update_actions)
        self.undo_stack.canRedoChanged.connect(self._update_actions)
        self.undo_stack.undoTextChanged.connect(self._update_actions)
        self.undo_stack.redoTextChanged.connect(self._update_actions)
        self.recent_menu.triggered.connect(self._on_recent_menu_triggered)
        self.model_panel.loadRequested.connect(self._on_model_panel_loadRequested)
        self.model_panel.openFileRequested.connect(self._on_open_model_action_triggered)
        self.model_panel.useAsHeadRequested.connect(self.use_as_head)
        self.model_panel.replaceHeadRequested.connect(self.open_head_dialog)
        self.controller.headsChanged.connect(self._on_controller_headsChanged)
        self.controller.versionChanged.connect(self._on_controller_versionChanged)
        self.controller.treeChanged.connect(self._update_status)
        self.jobs.jobsChanged.connect(self._update_actions)
        self.state.subscribe(self._on_state_changed)
        self.loads.modelLoaded.connect(self._on_loads_modelLoaded)
        self.loads.modelLoaded.connect(self.modelLoaded)
        self.loads.loadFailed.connect(self._on_loads_loadFailed)
        self.loads.loadFailed.connect(self.modelLoadFailed)
        self.loads.loadEnded.connect(self._on_loads_loadEnded)
        self.training.trainingStarted.connect(self.trainingStarted)
        self.training.trainingFinished.connect(self.trainingFinished)
        self.training.resultsReady.connect(self.resultsReady)

    def build_panels(self) -> None:
        """Create the Data, Train, Results and Try it pages (imports torch and pyqtgraph)."""
        if self._panels_built:
            return
        self._panels_built = True
        from headswap_gui.gui.qt_env import prepare_qt_environment

        prepare_qt_environment()
        current = self.tabs.currentIndex()
        # Imported here, not at the top: they pull in torch and pyqtgraph, which the first paint
        # must not wait for. Plain import statements, so a bundler sees every page.
        from headswap_gui.gui.check_labels_panel import CheckLabelsPanel
        from headswap_gui.gui.data_panel import DataPanel
        from headswap_gui.gui.map_panel import MapPanel
        from headswap_gui.gui.plots import TrainingPlotsView
        from headswap_gui.gui.results_panel import ResultsPanel
        from headswap_gui.gui.runs_panel import RunsPanel
        from headswap_gui.gui.training_panel import TrainingPanel
        from headswap_gui.gui.try_panel import TryPanel

        self.data_panel = self._named(DataPanel(self))
        self.training_panel = self._named(TrainingPanel(self))
        self.plots_view = self._named(TrainingPlotsView(self))
        self.results_panel = self._named(ResultsPanel(self))
        self.try_panel = self._named(TryPanel(self))
        self.try_panel.model_lease = self.model_lease
        self.labels_panel = self._named(CheckLabelsPanel(self.undo_stack, self))
        self.labels_panel.model_lease = self.model_lease
        self.map_panel = self._named(MapPanel(self))
        self.map_panel.model_lease = self.model_lease

        self.runs_panel = RunsPanel(self, root=self._runs_root)

        # Stacked: the form lays its two setting groups side by side at this width, and the
        # plots get the page's full width and whatever height the form leaves (the form folds
        # away while a run trains).
        self.train_page = QWidget()
        self.train_page.setObjectName("trainPage")
        train_layout = QVBoxLayout(self.train_page)
        train_layout.setContentsMargins(0, 0, 0, 0)
        train_layout.setSpacing(0)
        train_layout.addWidget(self.training_panel)
        train_layout.addWidget(_scrollable(self.plots_view), 1)
        pages = {
            _TAB_DATA: self.data_panel,
            _TAB_TRAIN: self.train_page,
            _TAB_RESULTS: self.results_panel,
            _TAB_LABELS: self.labels_panel,
            _TAB_MAP: self.map_panel,
            _TAB_TRY: self.try_panel,
            _TAB_RUNS: self.runs_panel,
        }
        titles = [self.tabs.tabText(i) for i in range(self.tabs.count())]
        self.tabs.blockSignals(True)
        while self.tabs.count():
            old = self.tabs.widget(0)
            self.tabs.removeTab(0)
            old.deleteLater()
        for key, title in zip(self._tab_keys, titles):
            self.tabs.addTab(pages[key], title)
        self.tabs.setCurrentIndex(max(0, current))
        self.tabs.blockSignals(False)
        self._connect_panels()
        self._install_drop_router()
        guard_wheel(self)  # the wheel scrolls pages; it does not change settings under the pointer
        tab = self.settings.current_tab()
        if tab in self._tab_keys:
            self.tabs.setCurrentIndex(self._tab_keys.index(tab))
        self._restore_hyperparameters()
        self.give_model_to_pages()  # a model loaded while the pages were being made
        self._update_device_label()
        self._update_actions()
        pending, self._pending = self._pending, []
        for job in pending:
            job()
        self.panelsReady.emit()

    def _named(self, panel: Any) -> Any:
        name = type(panel).__name__
        if not panel.objectName():
            panel.setObjectName(name[0].lower() + name[1:])
        return panel

    def _connect_panels(self) -> None:
        if self.data_panel is not None:
            self.data_panel.datasetChanged.connect(self._on_data_panel_datasetChanged)
            self.data_panel.tryImagesRequested.connect(self.try_images)
            self.data_panel.trainRequested.connect(self._on_start_action_triggered)
            self.data_panel.imageActivated.connect(self.show_image)
            self.data_panel.scanFailed.connect(self._on_data_panel_scanFailed)
        if self.training_panel is not None:
            self.training_panel.startRequested.connect(self.start_training)
            self.training_panel.stopRequested.connect(self.training.stop)
        if self.results_panel is not None:
            self.results_panel.imageActivated.connect(self.show_image)
        if self.try_panel is not None:
            self.try_panel.imageActivated.connect(self.show_image)
        if self.labels_panel is not None:
            self.labels_panel.imageActivated.connect(self.show_image)
            if self.data_panel is not None:  # the folder changed on disk: the Data page scans it again
                self.labels_panel.rescanRequested.connect(self.data_panel.load_folder)
            self.labels_panel.retrainRequested.connect(self._on_start_action_triggered)
            self.labels_panel.set_dataset(self.dataset())
        if self.map_panel is not None:
            self.map_panel.imageActivated.connect(self.show_image)
            queue_moves = getattr(self.labels_panel, "queue_moves", None)  # the Check labels page moves the files
            if queue_moves is not None:
                self.map_panel.relabelRequested.connect(queue_moves)
            self.map_panel.set_dataset(self.dataset())
        self.runs_panel.openRequested.connect(self.open_run)
        self.runs_panel.resumeRequested.connect(self.resume_run)
        self.runs_panel.compareRequested.connect(self.compare_run)
        if self.controller.loaded is not None:
            self.give_model_to_pages()

    def _install_drop_router(self) -> None:
        """Let drops anywhere reach the window: watch every child that takes drops itself."""
        for widget in self.findChildren(QWidget):
            if widget.acceptDrops():
                widget.installEventFilter(self._drop_router)

    def _fit_to_screen(self, size: tuple[int, int], fill: float = 0.92) -> None:
        """At most ``size``, at most ``fill`` of the screen's free area, and all of it on the
        screen: a window that opens larger than a 1024×768 or 1280×720 screen hides its Stop
        button, status bar and title-bar buttons."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(*size)
            return
        area = screen.availableGeometry()
        width = min(size[0], int(area.width() * fill))
        height = min(size[1], int(area.height() * fill))
        self.resize(width, height)
        frame = self.frameGeometry()
        if not area.contains(frame):
            frame.moveCenter(area.center())
            self.move(max(area.left(), frame.left()), max(area.top(), frame.top()))
        share = _MODEL_PANE_SHARE / 100
        self.main_splitter.setSizes([int(width * share), width - int(width * share)])

    def _restore_layout(self) -> None:
        geometry = self.settings.window_geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)  # saved on another (larger) screen, perhaps:
            self._fit_to_screen((self.width(), self.height()), fill=1.0)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)
        splitter = self.settings.splitter_state("main")
        if splitter is not None:
            self.main_splitter.restoreState(splitter)
            self._sync_model_pane_action()
        model_splitter = self.settings.splitter_state("model")
        if model_splitter is not None:
            self.model_panel.splitter.restoreState(model_splitter)
        download = self.settings.download_pretrained()
        if download:
            self.model_panel.set_weights_choice("download")

    def save_layout(self) -> None:
        """Write geometry, splitters and the current page to the settings."""
        self.settings.set_window_geometry(self.saveGeometry())
        self.settings.set_window_state(self.saveState())
        self.settings.set_splitter_state("main", self.main_splitter.saveState())
        self.settings.set_splitter_state("model", self.model_panel.splitter.saveState())
        index = self.tabs.currentIndex()
        if 0 <= index < len(self._tab_keys):
            self.settings.set_current_tab(self._tab_keys[index])
        self.settings.set_download_pretrained(self.model_panel.weights_choice() == "download")
        self.settings.sync()

    # ================================================================== start-up ==========

    def start_up(self, *, demo: bool = False, model: str | None = None, data: str | None = None) -> None:
        """After the first paint: import the heavy modules off-thread, build the pages, list
        the zoo, then open what the command line asked for."""

        if model and data is None and Path(model).is_dir() and not (Path(model) / MODEL_FOLDER_MARKER).is_file():
            model, data = None, model  # `headswap-gui FOLDER`: a folder of images, not a model

        def then() -> None:
            self.model_panel.populate_zoo()
            if data:
                self.open_data_folder(data)

        if self._panels_built:
            self._open_at_start(demo, model)
            then()
            return
        self._pending.append(then)
        self.model_panel.set_busy(self.tr("Starting up…"))
        runner = self.jobs.start("warmup", warm_up_events, stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_warmup_runner_eventEmitted)
        runner.finished.connect(self._on_warmup_runner_finished)
        # The model (and the demo images) load alongside the warm-up, not after it: the load
        # waits for torch like the warm-up does, then builds while the pages are being made.
        self._open_at_start(demo, model)

    def _open_at_start(self, demo: bool, model: str | None) -> None:
        if demo:
            self.open_demo()
        if model:
            self.load_model(model)

    @Slot(object)
    def _on_warmup_runner_eventEmitted(self, event: object) -> None:
        if isinstance(event, LoadStage):
            self.statusBar().showMessage(event.text)

    @Slot()
    def _on_warmup_runner_finished(self) -> None:
        if self._closing:
            return
        if not self.is_loading():
            self.model_panel.set_busy(None)
            if self.controller.loaded is None:
                self.model_panel.set_status(self.tr("No model loaded. Pick one from the list, or open a file."))
        self.statusBar().clearMessage()
        self.build_panels()

    def open_demo(self) -> None:
        """The one-click tour: the demo model, the digits folder and sensible settings."""
        self.load_model("demo")
        runner = self.jobs.start("demo-data", demo_data_events(self.demo_data_dir), stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_demo_runner_eventEmitted)
        runner.failed.connect(self._on_demo_runner_failed)
        self.apply_training_settings(DEMO_TRAIN_SETTINGS)

    @Slot(object)
    def _on_demo_runner_eventEmitted(self, event: object) -> None:
        if isinstance(event, LoadStage):
            self.statusBar().showMessage(event.text, 5000)
        elif isinstance(event, JobDone) and not self._closing:
            info = event.value
            self._when_panels_ready(lambda: self._show_demo_data(info))

    def _show_demo_data(self, info: Any) -> None:
        if self.data_panel is None:
            return
        self.data_panel.set_dataset(info)
        self.demoDataReady.emit(info)
        self.statusBar().showMessage(
            self.tr("Demo ready: the digits images are loaded. Press Start on the Train page (Ctrl+Return)."), 15000
        )

    @Slot(str)
    def _on_demo_runner_failed(self, message: str) -> None:
        self.show_error(self.tr("Could not prepare the demo images"), message)

    def _when_panels_ready(self, job: Callable[[], None]) -> None:
        if self._panels_built:
            job()
        else:
            self._pending.append(job)

    # ================================================================== jobs ==============

    def is_closing(self) -> bool:
        return self._closing

    def is_training(self) -> bool:
        return self.jobs.is_running("train")

    def is_loading(self) -> bool:
        return self.jobs.is_running("load")

    def is_model_busy(self) -> bool:
        """A worker uses the model (training, evaluating, exporting): it must not be edited."""
        return any(self.jobs.is_running(key) for key in ("train", "eval", "export"))

    # ================================================================== models ============

    def load_model(self, source: str, *, download: bool = False, arch: str | None = None, trust: bool = False) -> bool:
        """Load ``source`` on a worker thread; ``modelLoaded`` or ``modelLoadFailed`` follows."""
        return self.loads.load(source, download=download, arch=arch, trust=trust)

    @Slot(object)
    def _on_loads_modelLoaded(self, _loaded: object) -> None:
        self.give_model_to_pages()
        self._update_status()

    @Slot(str)
    def _on_loads_loadFailed(self, _message: str) -> None:
        self.runs.load_failed()

    @Slot()
    def _on_loads_loadEnded(self) -> None:
        self.runs.model_loaded(self.controller.loaded)  # after the load job has ended: a resume may start now

    def remember_recent_model(self, source: str) -> None:
        self.model_panel.set_recent_models(self.settings.add_recent_model(source))
        self._update_recent_menu()

    def forget_recent_model(self, source: str) -> None:
        if source in self.settings.recent_models():
            self.model_panel.set_recent_models(self.settings.remove_recent_model(source))
            self._update_recent_menu()

    @Slot(str, bool)
    def _on_model_panel_loadRequested(self, source: str, download: bool) -> None:
        self.load_model(source, download=download)

    def give_model_to_pages(self) -> None:
        """The pages that use the model get it (or None while a job owns it)."""
        loaded = self.controller.loaded
        if self.try_panel is not None:
            self.try_panel.set_head_is_new(self.state.head_is_new())
        for page in (self.try_panel, self.labels_panel, self.map_panel):
            if page is not None:
                page.set_model(None if self.is_training() else loaded)
        if self.results_panel is not None:  # its heatmaps; while training the worker owns the model
            self.results_panel.model_lease = self.model_lease
            self.results_panel.set_model(loaded, training=self.is_training())
        if loaded is not None and self.training_panel is not None:
            self.training_panel.set_model_input_size(loaded.preprocessing.input_size)

    # ================================================================== heads =============

    def open_head_dialog(self) -> bool:
        """Ask for a new head (pre-filled from the dataset) and swap it in, undoably."""
        if not self._can_edit_model():
            return False
        from headswap_gui.core.heads import HeadSpec
        from headswap_gui.gui.head_dialog import HeadDialog

        controller = self.controller
        loaded = controller.loaded
        dataset = self.dataset()
        current = controller.num_classes() or 2
        note = ""
        if dataset is not None:
            num_classes = len(dataset.class_names)
            names: Sequence[str] | None = dataset.class_names
            note = self.tr("from the image folder ({n} classes)").format(n=num_classes)
        else:
            num_classes = current
            names = loaded.class_names if loaded.class_names and len(loaded.class_names) == current else None
        last = self.settings.last_head_design()
        spec = None
        if last:
            try:
                spec = HeadSpec.from_dict(last)
            except Exception:  # noqa: BLE001 - a stale setting must not block the dialog
                spec = None
        from headswap_gui.core.heads import head_module

        old_modules = {h.path: m for h in controller.heads if (m := head_module(loaded.model, h.path)) is not None}
        choice = HeadDialog.ask(
            self, heads=controller.heads, old_modules=old_modules, num_classes=num_classes,
            class_names=names, spec=spec, dataset_note=note,
        )
        if choice is None:
            return False
        return self.replace_head(choice.spec, choice.num_classes, choice.class_names)

    def replace_head(
        self, spec: Any, num_classes: int, class_names: Sequence[str] | None = None, *, text: str | None = None,
        seed: int | None = None,
    ) -> bool:
        """Swap every head for ``spec`` with ``num_classes`` outputs as one undoable step; the
        new weights come from ``seed`` (default: the Train page's Seed), as in the CLI."""
        if not self._can_edit_model():
            return False
        if self.controller.head_is_trained() and not ReplaceTrainedHeadQuestion.ask(self):
            return False
        if seed is None and self.training_panel is not None:
            seed = self.training_panel.seed()
        command = SwapHeadCommand(self.controller, num_classes, spec, class_names, text=text, seed=seed)
        self.undo_stack.push(command)
        if command.error:
            self.show_error(self.tr("Could not replace the head"), command.error)
            return False
        try:
            self.settings.set_last_head_design(spec.to_dict())
        except AttributeError:
            pass
        self.statusBar().showMessage(
            self.tr("{what}. Ctrl+Z puts the old head back.").format(what=command.text()), 10000
        )
        return True

    def use_as_head(self, path: str) -> bool:
        """Treat the layer at ``path`` as the (only) head, undoably."""
        if not self._can_edit_model():
            return False
        from headswap_gui.core.errors import HeadswapError

        try:
            heads = self.controller.loaded.find_heads([path])
        except HeadswapError as error:
            self.show_error(self.tr("Cannot use this layer as the head"), explain(error))
            return False
        self.undo_stack.push(SetHeadsCommand(self.controller, tuple(heads)))
        self.statusBar().showMessage(self.tr("{path} is now the head. Ctrl+Z undoes.").format(path=path), 8000)
        return True

    def _can_edit_model(self) -> bool:
        if self.controller.loaded is None:
            self.statusBar().showMessage(self.tr("Load a model first."), 5000)
            return False
        if self.is_model_busy() or self.is_loading():
            self.statusBar().showMessage(self.tr("The model is busy; wait for the current job to finish."), 5000)
            return False
        return True

    @Slot()
    def _on_undo_action_triggered(self) -> None:
        if self._can_edit_model() and self.undo_stack.canUndo():
            self.undo_stack.undo()

    @Slot()
    def _on_redo_action_triggered(self) -> None:
        if self._can_edit_model() and self.undo_stack.canRedo():
            self.undo_stack.redo()

    @Slot(object)
    def _on_controller_headsChanged(self, _heads: object) -> None:
        self.give_model_to_pages()

    @Slot(int, str)
    def _on_controller_versionChanged(self, version: int, reason: str) -> None:
        if self.results_panel is not None:
            self.results_panel.model_changed(version, reason)

    # ================================================================== data ==============

    def dataset(self) -> DatasetInfo | None:
        return self.state.dataset

    def open_data_folder(self, path: str) -> None:
        self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_DATA))
        self._when_panels_ready(lambda: self.data_panel is not None and self.data_panel.load_folder(path))

    @Slot(object)
    def _on_data_panel_datasetChanged(self, info: Any) -> None:
        self.state.update(dataset=info)
        if info is not None:
            self.settings.add_recent_folder(str(info.root))
            self._update_recent_menu()
            n = len(info.class_names)
            message = self.tr("{images} images in {n} classes from {root}").format(
                images=f"{len(info.samples):,}", n=n, root=info.root
            )
            head = self.controller.num_classes()
            if head is not None and head != n:
                message += self.tr(" — the head has {m} outputs; Start replaces it with a Linear head for {n} "
                                   "classes (or choose a design with Ctrl+H)").format(m=head, n=n)
            self.statusBar().showMessage(message, 10000)
        if self.labels_panel is not None:
            self.labels_panel.set_dataset(info)
        if self.map_panel is not None:
            self.map_panel.set_dataset(info)
        self.runs.dataset_ready(info)

    @Slot(str)
    def _on_data_panel_scanFailed(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)

    # ================================================================== paths / drops =====

    def page_handles_drop(self, widget: QObject, route: str) -> bool:
        """Whether the page under the cursor handles this kind of drop itself."""
        for panel, kind in ((self.data_panel, "data"), (self.try_panel, "images")):
            if panel is not None and route == kind and isinstance(widget, QWidget):
                if widget is panel or panel.isAncestorOf(widget):
                    return True
        return False

    def open_paths(self, paths: Sequence[str]) -> str:
        """Open dropped or given paths: a model, an image folder, or images to try."""
        route = classify_paths(paths)
        if route == "model":
            self.load_model(model_path(paths) or "")
        elif route == "data":
            self.open_data_folder(training_folder(paths) or "")
        elif route == "images":
            self.try_images(image_paths(paths))
        else:
            self.statusBar().showMessage(
                self.tr("Nothing to open there: drop a model file, an image folder or images."), 8000
            )
        return route

    def show_image(self, path: str) -> ImageViewer:
        """Open ``path`` large in the window's image viewer (one, reused), which also offers
        to classify it in Try it; returns the viewer."""
        if self._image_viewer is None:
            self._image_viewer = ImageViewer(self, on_try=lambda shown: self.try_images([shown]))
        self._image_viewer.show_image(path)
        return self._image_viewer

    def try_images(self, images: Sequence[str]) -> None:
        """Show the Try it page and classify ``images`` there."""
        self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_TRY))

        def send() -> None:
            panel = self.try_panel
            if panel is None:
                return
            panel.add_images(list(images))

        self._when_panels_ready(send)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        self._accept_if_usable(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        self._accept_if_usable(event)

    def _accept_if_usable(self, event: QDragEnterEvent | QDragMoveEvent) -> None:
        paths = local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if paths and self._drop_router.route(paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_paths(paths)

    # ================================================================== training ==========

    def apply_training_settings(self, values: dict[str, Any]) -> None:
        """Put hyperparameters into the Train page's form."""

        def apply() -> None:
            panel = self.training_panel
            if panel is None:
                return
            from headswap_gui.core.errors import HeadswapError
            from headswap_gui.core.training import TrainConfig

            try:
                base = panel.config().to_dict()
            except HeadswapError:  # an invalid form: start from the defaults
                base = {}
            try:
                config = TrainConfig.from_dict({**base, **values})
            except (HeadswapError, TypeError, ValueError):  # stale or invalid saved settings are ignored
                return
            panel.set_config(config)

        self._when_panels_ready(apply)

    def _restore_hyperparameters(self) -> None:
        values = self.settings.last_hyperparameters()
        if values:
            self.apply_training_settings(values)

    def current_training_config(self) -> Any:
        panel = self.training_panel
        if panel is None:
            return None
        return panel.config()

    @Slot()
    def _on_start_action_triggered(self) -> None:
        from headswap_gui.core.errors import HeadswapError

        try:
            config = self.current_training_config()
        except HeadswapError as error:
            self.show_error(self.tr("Invalid training settings"), explain(error))
            return
        if config is None:
            self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_TRAIN))
            return
        self.start_training(config)

    @Slot()
    def _on_cluster_action_triggered(self) -> None:
        self.run_on_cluster()

    def run_on_cluster(self, folder: str | None = None) -> QDialog | None:
        """Write the current run (model source, image folder, head, Train page settings) as a
        cluster job into ``folder`` (asked for when not given); returns the open dialog that
        says where the files are."""
        from headswap_gui.core.errors import HeadswapError
        from headswap_gui.gui.cluster_dialog import ClusterJobDialog, write_job
        from headswap_gui.gui.prompts import ClusterFolderPrompt

        try:
            config = self.current_training_config()
        except HeadswapError as error:
            self.show_error(self.tr("Invalid training settings"), explain(error))
            return None
        if config is None or self.controller.loaded is None or self.dataset() is None:
            return None
        folder = folder or ClusterFolderPrompt.ask(self, str(Path.home()))
        if not folder:
            return None
        try:
            job = write_job(self, folder, config)
        except (HeadswapError, OSError) as error:
            self.show_error(self.tr("Could not write the cluster job"), explain(error))
            return None
        dialog = ClusterJobDialog(self, job)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.statusBar().showMessage(self.tr("Cluster job written to {path}").format(path=folder), 10000)
        return dialog

    # ================================================================== runs ==============

    def set_last_run_dir(self, folder: str | None) -> None:
        """The run the window shows now (Save run as… copies it)."""
        self.state.update(run_dir=folder)

    def show_page(self, key: str) -> None:
        """Bring a page to the front: "data", "train", "results", "labels", "map", "try" or "runs"."""
        self.tabs.setCurrentIndex(self._tab_keys.index(key))

    @Slot(str)
    def open_run(self, folder: str) -> bool:
        return self.runs.open(folder)

    @Slot(str)
    def resume_run(self, folder: str) -> bool:
        return self.runs.open(folder, resume=True)

    @Slot(str)
    def compare_run(self, folder: str) -> bool:
        return self.runs.compare(folder)

    def start_training(self, config: Any, *, run_dir: Path | None = None, resume: bool = False) -> bool:
        """Train with ``config`` (a TrainConfig); see :meth:`TrainingController.start`."""
        return self.training.start(config, run_dir=run_dir, resume=resume)

    def stop_training(self) -> None:
        self.training.stop()

    def evaluate_model(self, config: Any, dataset: Any) -> None:
        """Evaluate the model on the validation split off-thread; fills the Results page."""
        self.training.evaluate(config, dataset)

    def set_training_ui(self, running: bool) -> None:
        """Pages that use the model or the data step aside while a run owns them (the Train
        page, which shows the run, is the TrainingController's)."""
        self.model_panel.set_editing_enabled(not running)
        self.model_panel.set_training(running)
        if self.try_panel is not None:
            self.give_model_to_pages()  # none while training: the worker owns the model
            self.try_panel.setEnabled(not running)
        if self.labels_panel is not None:
            self.labels_panel.setEnabled(not running)  # no file moves under a run's DataLoader
        if self.data_panel is not None:
            self.data_panel.setEnabled(not running)
        self.runs_panel.set_busy(running)
        if not running:
            self.runs_panel.refresh()  # the finished run with its figures (a new one shows at RunStarted)

    def set_device_text(self, device: str) -> None:
        self._device_text = device
        self._update_device_label()

    # ================================================================== files =============

    @Slot()
    def _on_open_model_action_triggered(self) -> None:
        if self.is_model_busy():
            return
        recent = self.settings.recent_models()
        start = str(Path(recent[0]).parent) if recent and os.path.exists(recent[0]) else ""
        path = OpenModelPrompt.ask(self, start)
        if path:
            p = Path(path)
            self.load_model(str(p.parent if p.name == MODEL_FOLDER_MARKER else p))

    @Slot()
    def _on_open_folder_action_triggered(self) -> None:
        self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_DATA))
        if self.data_panel is not None:
            self.data_panel.choose_folder()

    @Slot()
    def _on_save_run_action_triggered(self) -> None:
        self.save_run_as()

    def save_run_as(self, target: str | None = None) -> str | None:
        """Copy the last run folder to ``target`` (asked for when not given)."""
        return self.exports.save_run_as(target)

    @Slot()
    def _on_export_action_triggered(self) -> None:
        self.export_model(None)

    def export_model(self, answer: tuple[str, str] | None) -> bool:
        """Export the model as ``(format, path)`` (asked for when ``None``); see
        :class:`ExportController`."""
        started = self.exports.export(answer)
        self._update_actions()
        return started

    @property
    def last_export(self) -> Any:
        """The report of the last finished export (None before one)."""
        return self.exports.last_export

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        models = self.settings.recent_models()
        folders = self.settings.recent_folders()
        if models:
            self.recent_menu.addSection(self.tr("Models"))
            for source in models:
                action = self.recent_menu.addAction(source)
                action.setData(("model", source))
        if folders:
            self.recent_menu.addSection(self.tr("Image folders"))
            for folder in folders:
                action = self.recent_menu.addAction(folder)
                action.setData(("folder", folder))
        if not models and not folders:
            empty = self.recent_menu.addAction(self.tr("(nothing yet)"))
            empty.setEnabled(False)

    @Slot(QAction)
    def _on_recent_menu_triggered(self, action: QAction) -> None:
        data = action.data()
        if not data:
            return
        kind, value = data
        if kind == "model":
            self.load_model(value)
        else:
            self.open_data_folder(value)

    @Slot()
    @Slot()
    def _on_page_action_triggered(self) -> None:
        self.show_page(self.sender().data())

    def set_model_pane_visible(self, visible: bool) -> None:
        """Show or fold away the model pane; folded, the pages get the whole width."""
        sizes = self.main_splitter.sizes()
        total = sum(sizes)
        if visible and sizes[0] == 0:
            width = self._model_pane_width or int(total * _MODEL_PANE_SHARE / 100)
            self.main_splitter.setSizes([width, total - width])
        elif not visible and sizes[0] > 0:
            self._model_pane_width = sizes[0]  # it comes back as wide as it was
            self.main_splitter.setSizes([0, total])
        self._sync_model_pane_action()

    def model_pane_visible(self) -> bool:
        return self.main_splitter.sizes()[0] > 0

    def _sync_model_pane_action(self, *_args: object) -> None:
        self.model_pane_action.blockSignals(True)
        self.model_pane_action.setChecked(self.model_pane_visible())
        self.model_pane_action.blockSignals(False)

    def show_shortcuts(self) -> QDialog:
        """Help → Keyboard shortcuts, read from the window's actions; returns the open dialog."""
        from headswap_gui.gui.shortcuts_dialog import WIDGET_KEYS, ShortcutsDialog, shortcut_rows

        dialog = ShortcutsDialog(self, shortcut_rows(self.actions()) + list(WIDGET_KEYS))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _on_about_action_triggered(self) -> None:
        QMessageBox.about(
            self,
            self.tr("About headswap"),
            f"<h3>headswap {__version__}</h3><p>Fine-tune a pretrained image classifier by replacing "
            "its classifier head.</p><p>Load a model, choose an image folder with one subfolder per "
            "class, and press Start. Drop models, folders or images anywhere on the window.</p>",
        )

    # ================================================================== status ============

    def _on_state_changed(self, field: str) -> None:
        if field in ("loaded", "heads", "dataset", "run_dir"):
            self._update_actions()

    @Slot()
    def _update_actions(self, *_args: object) -> None:
        busy = self.is_model_busy()
        states = action_states(WorkbenchFacts(
            has_model=self.controller.loaded is not None,
            has_heads=bool(self.controller.heads),
            has_data=self.training_panel is not None and self.dataset() is not None,
            loading=self.is_loading(),
            training=self.is_training(),
            model_busy=busy,
            can_undo=self.undo_stack.canUndo(),
            can_redo=self.undo_stack.canRedo(),
            has_run=bool(self.state.run_dir),
        ))
        self.open_model_action.setEnabled(states.open_model)
        self.recent_menu.setEnabled(states.open_model)
        self.replace_head_action.setEnabled(states.replace_head)
        self.undo_action.setEnabled(states.undo)
        self.redo_action.setEnabled(states.redo)
        undo_text = self.undo_stack.undoText()
        redo_text = self.undo_stack.redoText()
        self.undo_action.setText(self.tr("&Undo {what}").format(what=undo_text) if undo_text else self.tr("&Undo"))
        self.redo_action.setText(self.tr("&Redo {what}").format(what=redo_text) if redo_text else self.tr("&Redo"))
        self.show_head_action.setEnabled(states.show_head)
        self.start_action.setEnabled(states.start_training)
        self.cluster_action.setEnabled(states.run_on_cluster)
        if self.data_panel is not None:
            self.data_panel.set_can_train(states.start_training, self._why_no_training())
        if self.labels_panel is not None:
            self.labels_panel.set_can_train(states.start_training)
        self.stop_action.setEnabled(states.stop_training)
        self.save_run_action.setEnabled(states.save_run)
        self.export_action.setEnabled(states.export)
        self.model_panel.set_editing_enabled(not busy)

    def _why_no_training(self) -> str:
        """What stands between the user and a run, in the words of the Data page."""
        if self.is_training():
            return self.tr("A run is training; its progress is on the Train page.")
        if self.controller.loaded is None:
            return self.tr("Load a model (on the left) to train on these images.")
        if self.is_model_busy():
            return self.tr("The model is busy; training can start when it is done.")
        return self.tr("Open an image folder with one subfolder per class to train.")

    @Slot()
    def _update_status(self, *_args: object) -> None:
        loaded = self.controller.loaded
        if loaded is None:
            self.status_model_label.setText(self.tr("No model"))
            self.status_params_label.setText("")
            return
        source = loaded.source
        shown = Path(source).name if os.sep in source or "/" in source else source
        self.status_model_label.setText(shown if len(shown) <= 48 else "…" + shown[-47:])
        self.status_model_label.setToolTip(f"{source}\nweights: {loaded.weights}")
        tree = self.controller.tree
        total = tree.total_params if tree is not None else loaded.parameter_count
        trainable = tree.trainable_params if tree is not None else total
        text = self.tr("{total} parameters").format(total=_short_count(total))
        if trainable != total:
            text += self.tr(" ({trainable} trainable)").format(trainable=_short_count(trainable))
        self.status_params_label.setText(text)
        self.status_params_label.setToolTip(f"{total:,} parameters, {trainable:,} trainable")

    def _update_device_label(self) -> None:
        if self._device_text:
            self.status_device_label.setText(self.tr("device: {d}").format(d=self._device_text))
            return
        try:
            from headswap_gui.core.devices import list_devices

            best = list_devices()[0]
            self.status_device_label.setText(self.tr("device: {d}").format(d=best.name))
            self.status_device_label.setToolTip(best.label)
        except Exception:  # noqa: BLE001 - the label is informative only
            self.status_device_label.setText("")

    def show_error(self, title: str, message: str) -> None:
        """A user-facing error: the message (no traceback) in a window-modal box."""
        self.last_error = message
        self.errorShown.emit(message)
        if self._closing:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("errorMessageBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ================================================================== closing ===========

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.is_training() and not self._closing:
            if not StopTrainingQuestion.ask(self):
                event.ignore()
                return
        self._closing = True
        self.save_layout()
        self.statusBar().showMessage(self.tr("Stopping background work…"))
        self.shutdown()
        event.accept()
        super().closeEvent(event)
        self.closed.emit()

    def shutdown(self, timeout_ms: int = _CLOSE_WAIT_MS) -> bool:
        """Stop every job of the process at once, then wait for them against one deadline
        (window close, ``aboutToQuit``); True when all ended in time."""
        self._closing = True
        deadline = time.monotonic() + timeout_ms / 1000
        ok = self.jobs.stop_all(timeout_ms)  # asks the panels' jobs to stop too
        panels = (self.data_panel, self.results_panel, self.try_panel, self.labels_panel, self.map_panel, self.model_panel)
        for panel in panels:
            if panel is not None:
                ok = panel.shutdown(max(0, int((deadline - time.monotonic()) * 1000))) and ok
        return ok


def _scrollable(widget: QWidget) -> QWidget:
    """``widget`` in a frameless scroll area, so a page's minimum width never forces the
    whole window wider than a small screen."""
    from PySide6.QtWidgets import QFrame, QScrollArea

    area = QScrollArea()
    area.setObjectName(f"{widget.objectName() or 'page'}Scroll")
    area.setAccessibleName(widget.accessibleName() or "Page")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(widget)
    return area


def _short_count(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f} B"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 10_000:
        return f"{n / 1e3:.0f} k"
    return f"{n:,}"

