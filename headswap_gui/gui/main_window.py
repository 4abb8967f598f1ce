"""The main window: model on the left; Data, Train, Results and Try it pages on the right.

The window is the coordinator. It owns the :class:`ModelController` (the loaded model and its
heads), the undo stack, and every long job, each a core generator driven by a
:class:`GeneratorRunner`: loading a model, training (``core.training.fit``), evaluating the
trained model for the Results page, writing the demo data, exporting. The panels only show
things and ask for things through signals.

Start-up is two-phase so the window paints within a moment of launch: nothing on this
module's import path imports torch, torchvision, timm or pyqtgraph. With
``defer_panels=True`` the pages start as placeholders; :meth:`MainWindow.start_up` then
imports the heavy modules on a worker thread and builds the real pages when that is done.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeySequence,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
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
from headswap_gui.gui.jobs import ModelLease, leased
from headswap_gui.gui.model_panel import ModelPanel
from headswap_gui.gui.run_controller import RunController
from headswap_gui.gui.settings import AppSettings
from headswap_gui.gui.worker import GeneratorRunner, running_runners

if TYPE_CHECKING:
    from headswap_gui.core.data import DatasetInfo
    from headswap_gui.core.sources import LoadedModel

__all__ = [
    "ArchitecturePrompt",
    "DEMO_TRAIN_SETTINGS",
    "MainWindow",
    "ModelLoadResult",
    "ReplaceTrainedHeadQuestion",
    "SaveRunPrompt",
    "StopTrainingQuestion",
    "TrustPrompt",
]

MODEL_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")  # = sources.STATE_DICT_SUFFIXES
MODEL_FOLDER_MARKER = "headswap.json"  # = run_manifest.MANIFEST_FILE (core is not imported at start-up)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

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
_HEAVY_MODULES = (
    "torch",
    "torchvision",
    "timm",
    "headswap_gui.core.sources",
    "headswap_gui.core.data",
    "headswap_gui.core.training",
    "headswap_gui.core.predict",
)
_TAB_DATA, _TAB_TRAIN, _TAB_RESULTS, _TAB_TRY, _TAB_RUNS = "data", "train", "results", "try", "runs"


# -- questions the window asks (tests replace ``ask``) --------------------------------------------


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


class OpenModelPrompt:
    @classmethod
    def ask(cls, parent: QWidget | None, start: str = "") -> str | None:
        path, _ = QFileDialog.getOpenFileName(
            parent, "Open model", start,
            "Models (*.safetensors *.pt *.pth *.bin *.ckpt headswap.json);;All files (*)",
        )
        return path or None


# -- what the jobs yield -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadStage:
    text: str


@dataclass
class ModelLoadResult:
    loaded: LoadedModel
    heads: tuple[Any, ...]
    output_shapes: dict[str, tuple[int, ...]]
    tree: Any  # LayerRecord
    head_problem: str | None


@dataclass
class EvaluationReady:
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    result: Any  # training.EvalResult
    model_version: int  # the ModelController.version the evaluation saw


@dataclass(frozen=True)
class _Done:
    value: Any


def load_model_events(
    source: str, *, download: bool = False, arch: str | None = None, trust: bool = False
) -> Callable[[threading.Event], Iterator[object]]:
    """A generator factory: load ``source``, find its heads, build its layer tree."""

    def events(stop: threading.Event) -> Iterator[object]:
        what = "Downloading (if needed) and loading" if download else "Loading"
        yield LoadStage(f"{what} {source}…")
        from headswap_gui.core.module_tree import inspect_model
        from headswap_gui.core.sources import load_model

        loaded = load_model(source, arch=arch, trust=trust, download=download)
        if stop.is_set():
            return
        yield LoadStage(f"Finding the classifier head of {loaded.source} and building the layer tree…")
        inspection = inspect_model(loaded.model, loaded.preprocessing.input_size)
        if stop.is_set():
            return
        yield ModelLoadResult(
            loaded, inspection.heads, dict(inspection.output_shapes), inspection.tree, inspection.problem
        )

    return events


def _warm_up_events(stop: threading.Event) -> Iterator[object]:
    """Import the heavy modules on a worker thread, so the window stays responsive."""
    for name in _HEAVY_MODULES:
        if stop.is_set():
            return
        yield LoadStage(f"Loading {name.rsplit('.', 1)[-1]}…")
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a missing optional module shows up where it is used
    yield _Done(True)


def _demo_data_events(directory: str | None) -> Callable[[threading.Event], Iterator[object]]:
    def events(stop: threading.Event) -> Iterator[object]:
        yield LoadStage("Preparing the digits demo images (written on first use)…")
        from headswap_gui.core.demo_data import DEFAULT_DEMO_DATA_DIR, write_digits_dataset

        yield _Done(write_digits_dataset(directory or DEFAULT_DEMO_DATA_DIR))

    return events


def _evaluation_events(
    loaded: Any, dataset: Any, config: Any, model_version: int
) -> Callable[[threading.Event], Iterator[object]]:
    def events(stop: threading.Event) -> Iterator[object]:
        from headswap_gui.core.data import split_samples
        from headswap_gui.core.devices import resolve_device
        from headswap_gui.core.training import build_eval_loader, evaluate

        yield LoadStage("Evaluating the trained model on the validation images…")
        split = split_samples(dataset, config.val_fraction, config.seed)
        preprocessing = loaded.preprocessing
        if config.image_size:
            preprocessing = preprocessing.with_input_size(config.image_size)
        device = resolve_device(config.device)
        loader = build_eval_loader(split.val, preprocessing, batch_size=max(1, config.batch_size), device=device)
        result = evaluate(loaded.model, loader, device, stop=stop)
        if result is not None:
            yield EvaluationReady(tuple(dataset.class_names), tuple(s.path for s in split.val), result, model_version)

    return events


def _export_events(loaded: Any, fmt: str, path: str, images: list[str]) -> Callable[[threading.Event], Iterator[object]]:
    def events(stop: threading.Event) -> Iterator[object]:
        yield LoadStage(f"Exporting {fmt} to {path} and checking it against PyTorch…")
        from headswap_gui.core.export import export_model

        yield _Done(export_model(loaded, fmt, path, images or None))

    return events


_USE_AS_HEAD_HINT = "Right-click the layer that produces the class scores → Use as head."


def _window_hint(error: BaseException | None) -> str:
    """How to act on a typed core error in the window (core messages name no controls)."""
    from headswap_gui.core.errors import HeadNotFoundError, WeightsNotCachedError

    if isinstance(error, WeightsNotCachedError):
        return "Choose “Pretrained — download if missing” under Weights and load it again."
    if isinstance(error, HeadNotFoundError):
        return _USE_AS_HEAD_HINT
    return ""


def _with_hint(message: str, error: BaseException | None) -> str:
    hint = _window_hint(error)
    return f"{message}. {hint}" if hint else message


def _local_paths(urls: Sequence[QUrl]) -> list[str]:
    return [url.toLocalFile() for url in urls if url.isLocalFile() and url.toLocalFile()]


class _DropRouter(QObject):
    """Routes drops on any page to the window, except the drops a page handles itself
    (folders on the Data page, images on the Try it page)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self._last: tuple[tuple[str, ...], str] = ((), "")  # drag moves repeat the same paths

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind not in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            return False
        paths = _local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []  # type: ignore[attr-defined]
        if not paths:
            return False
        window = self._window
        key = tuple(paths)
        if key != self._last[0]:
            self._last = (key, window.classify_paths(paths))
        route = self._last[1]
        if window.page_handles_drop(watched, route):
            return False
        if route == "":
            return False
        if kind == QEvent.Type.Drop:
            event.acceptProposedAction()  # type: ignore[attr-defined]
            window.open_paths(paths)
        else:
            event.acceptProposedAction()  # type: ignore[attr-defined]
        return True


class MainWindow(QMainWindow):
    """The headswap workbench.

    Signals: ``modelLoaded(object)`` (a LoadedModel), ``modelLoadFailed(str)``,
    ``panelsReady()``, ``trainingStarted()``, ``trainingFinished(object)`` (the RunFinished
    event or None), ``resultsReady(object)`` (an EvaluationReady), ``errorShown(str)``,
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
        self.controller = ModelController(self)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setObjectName("undoStack")
        self._runners: dict[str, GeneratorRunner] = {}
        self.model_lease = ModelLease()  # train, evaluate, export and predict take turns on the model
        self._panels_built = False
        self._pending: list[Callable[[], None]] = []
        self._closing = False
        self._train_config: Any = None
        self._train_dataset: Any = None
        self._last_finished: Any = None
        self._last_run_dir: str | None = None
        self._load_request: dict[str, Any] | None = None
        self._device_text = ""
        self.last_error: str | None = None
        self.demo_data_dir: str | None = None  # None: core's default folder in the user data dir
        self.last_export: Any = None
        self._last_eval_paths: tuple[str, ...] = ()
        self.data_panel: Any = None
        self.training_panel: Any = None
        self.plots_view: Any = None
        self.results_panel: Any = None
        self.try_panel: Any = None
        self.runs_panel: Any = None
        self.runs = RunController(self)  # reopening, resuming and comparing saved runs
        self._drop_router = _DropRouter(self)

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
        help_menu = bar.addMenu(self.tr("&Help"))
        help_menu.setObjectName("helpMenu")
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
        self.main_splitter.setSizes([575, 825])
        container = QWidget()
        layout = QVBoxLayout(container)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.main_splitter)
        self.setCentralWidget(container)
        self.resize(1400, 900)

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
        self.about_action.triggered.connect(self._on_about_action_triggered)
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
        from headswap_gui.gui.data_panel import DataPanel
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

        self.runs_panel = RunsPanel(self, root=self._runs_root)

        # Stacked: the form lays its two setting groups side by side at this width, and the
        # plots get the page's full width.
        self.train_splitter = QSplitter(Qt.Orientation.Vertical)
        self.train_splitter.setObjectName("trainSplitter")
        self.train_splitter.addWidget(self.training_panel)  # scrolls its own form
        self.train_splitter.addWidget(_scrollable(self.plots_view))
        self.train_splitter.setChildrenCollapsible(False)
        self.train_splitter.setStretchFactor(0, 0)
        self.train_splitter.setStretchFactor(1, 1)
        self.train_splitter.setSizes([400, 420])
        pages = {
            _TAB_DATA: self.data_panel,
            _TAB_TRAIN: self.train_splitter,
            _TAB_RESULTS: self.results_panel,
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
        saved = self.settings.splitter_state("trainStack")
        if saved is not None and getattr(self, "train_splitter", None) is not None:
            self.train_splitter.restoreState(saved)
        tab = self.settings.current_tab()
        if tab in self._tab_keys:
            self.tabs.setCurrentIndex(self._tab_keys.index(tab))
        self._restore_hyperparameters()
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
            self.data_panel.scanFailed.connect(self._on_data_panel_scanFailed)
        if self.training_panel is not None:
            self.training_panel.startRequested.connect(self.start_training)
            self.training_panel.stopRequested.connect(self.stop_training)
        self.runs_panel.openRequested.connect(self.open_run)
        self.runs_panel.resumeRequested.connect(self.resume_run)
        self.runs_panel.compareRequested.connect(self.compare_run)
        if self.controller.loaded is not None:
            self._give_model_to_try_panel()

    def _install_drop_router(self) -> None:
        """Let drops anywhere reach the window: watch every child that takes drops itself."""
        for widget in self.findChildren(QWidget):
            if widget.acceptDrops():
                widget.installEventFilter(self._drop_router)

    def _restore_layout(self) -> None:
        geometry = self.settings.window_geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)
        splitter = self.settings.splitter_state("main")
        if splitter is not None:
            self.main_splitter.restoreState(splitter)
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
        if getattr(self, "train_splitter", None) is not None:
            self.settings.set_splitter_state("trainStack", self.train_splitter.saveState())
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
            if demo:
                self.open_demo()
            if model:
                self.load_model(model)
            if data:
                self.open_data_folder(data)

        if self._panels_built:
            then()
            return
        self._pending.append(then)
        self.model_panel.set_busy(self.tr("Starting up…"))
        runner = self._start_runner("warmup", _warm_up_events, stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_warmup_runner_eventEmitted)
        runner.finished.connect(self._on_warmup_runner_finished)

    @Slot(object)
    def _on_warmup_runner_eventEmitted(self, event: object) -> None:
        if isinstance(event, LoadStage):
            self.statusBar().showMessage(event.text)

    @Slot()
    def _on_warmup_runner_finished(self) -> None:
        if self._closing:
            return
        if not self._is_running("load"):
            self.model_panel.set_busy(None)
            self.model_panel.set_status(self.tr("No model loaded. Pick one from the list, or open a file."))
        self.statusBar().clearMessage()
        self.build_panels()

    def open_demo(self) -> None:
        """The one-click tour: the demo model, the digits folder and sensible settings."""
        self.load_model("demo")
        runner = self._start_runner("demo-data", _demo_data_events(self.demo_data_dir), stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_demo_runner_eventEmitted)
        runner.failed.connect(self._on_demo_runner_failed)
        self.apply_training_settings(DEMO_TRAIN_SETTINGS)

    @Slot(object)
    def _on_demo_runner_eventEmitted(self, event: object) -> None:
        if isinstance(event, LoadStage):
            self.statusBar().showMessage(event.text, 5000)
        elif isinstance(event, _Done) and not self._closing:
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

    # ================================================================== runners ===========

    def _start_runner(self, key: str, factory: Callable[[threading.Event], Iterator[object]], **kwargs: Any) -> GeneratorRunner:
        previous = self._runners.get(key)
        if previous is not None and previous.is_running():
            previous.request_stop()
        runner = GeneratorRunner(factory, **kwargs)
        runner.setObjectName(f"{key}Runner")
        self._runners[key] = runner
        runner.finished.connect(self._update_actions)
        runner.start()
        return runner

    def _is_running(self, key: str) -> bool:
        runner = self._runners.get(key)
        return runner is not None and runner.is_running()

    def _is_current(self, key: str) -> bool:
        """Whether the signal being handled comes from the latest runner for ``key``."""
        return self.sender() is self._runners.get(key)

    def is_training(self) -> bool:
        return self._is_running("train")

    def is_loading(self) -> bool:
        return self._is_running("load")

    def is_model_busy(self) -> bool:
        """A worker uses the model (training or evaluating): it must not be edited."""
        return self._is_running("train") or self._is_running("eval") or self._is_running("export")

    def runners(self) -> dict[str, GeneratorRunner]:
        return dict(self._runners)

    # ================================================================== models ============

    def load_model(self, source: str, *, download: bool = False, arch: str | None = None, trust: bool = False) -> bool:
        """Load ``source`` on a worker thread; ``modelLoaded`` or ``modelLoadFailed`` follows."""
        if self.is_model_busy():
            self.statusBar().showMessage(self.tr("Stop training before loading another model."), 5000)
            return False
        source = source.strip()
        if not source:
            return False
        self._load_request = {"source": source, "download": download, "arch": arch, "trust": trust}
        runner = self._start_runner("load", load_model_events(source, download=download, arch=arch, trust=trust))
        runner.eventEmitted.connect(self._on_load_runner_eventEmitted)
        runner.failed.connect(self._on_load_runner_failed)
        runner.finished.connect(self._on_load_runner_finished)
        text = self.tr("Downloading (if needed) and loading {source}…") if download else self.tr("Loading {source}…")
        self.model_panel.set_busy(text.format(source=source))
        self.busyChanged.emit(True)
        self._update_actions()
        return True

    @Slot(object)
    def _on_load_runner_eventEmitted(self, event: object) -> None:
        if not self._is_current("load"):
            return
        if isinstance(event, LoadStage):
            self.model_panel.set_busy(event.text)
        elif isinstance(event, ModelLoadResult):
            self._install_loaded(event)

    def _install_loaded(self, result: ModelLoadResult) -> None:
        loaded = result.loaded
        self.undo_stack.clear()
        self.controller.set_model(loaded, result.heads, result.output_shapes, result.tree)
        request = self._load_request or {}
        source = str(request.get("source") or loaded.source)
        if request.get("arch"):
            source = loaded.source  # a weights file: remembering it without --arch would not reload
        self.model_panel.set_recent_models(self.settings.add_recent_model(source))
        self._update_recent_menu()
        self.setWindowTitle(f"headswap — {loaded.source}")
        self._give_model_to_try_panel()
        if result.head_problem:
            self.model_panel.set_status(
                self.model_panel.status_label.text() + "<br><b>" + self.tr("No head found:") + "</b> "
                + result.head_problem + ". " + self.tr(_USE_AS_HEAD_HINT)
            )
            self.statusBar().showMessage(self.tr("No classifier head found; right-click a layer → Use as head."), 10000)
        else:
            head = self.controller.main_head()
            if head is not None:
                self.statusBar().showMessage(
                    self.tr("Loaded {source}; its head is {path} ({type}, {n} classes).").format(
                        source=loaded.source, path=head.path, type=head.type_name, n=head.out_features
                    ),
                    10000,
                )
        self._update_status()
        self.modelLoaded.emit(loaded)

    @Slot(str)
    def _on_load_runner_failed(self, message: str) -> None:
        if not self._is_current("load"):
            return
        from headswap_gui.core.errors import NeedsArchitectureError, NeedsTrustError

        request = dict(self._load_request or {})
        source = str(request.get("source", ""))
        error = self._runners["load"].error
        retry: dict[str, Any] | None = None
        if isinstance(error, NeedsArchitectureError) and not request.get("arch"):
            arch = ArchitecturePrompt.ask(self, source, self.model_panel.zoo_sources())
            if arch:
                retry = {**request, "arch": arch}
        elif isinstance(error, NeedsTrustError) and not request.get("trust"):
            if TrustPrompt.ask(self, source):
                retry = {**request, "trust": True}
        if retry is not None:
            QTimer.singleShot(0, self, lambda: self.load_model(**retry))
            return
        if source in self.settings.recent_models() and (os.sep in source or "/" in source) and not os.path.exists(source):
            self.model_panel.set_recent_models(self.settings.remove_recent_model(source))  # moved or deleted
            self._update_recent_menu()
        self.runs.load_failed()
        self.model_panel.set_status(self.tr("Could not load {source}.").format(source=source))
        self.show_error(self.tr("Could not load the model"), _with_hint(message, error))
        self.modelLoadFailed.emit(message)

    @Slot()
    def _on_load_runner_finished(self) -> None:
        if not self._is_current("load"):
            return
        self.model_panel.set_busy(None)
        self.busyChanged.emit(False)
        self._update_actions()
        self.runs.model_loaded(self.controller.loaded)  # after the load job has ended: a resume may start now

    @Slot(str, bool)
    def _on_model_panel_loadRequested(self, source: str, download: bool) -> None:
        self.load_model(source, download=download)

    def _give_model_to_try_panel(self) -> None:
        loaded = self.controller.loaded
        if self.try_panel is not None:
            self.try_panel.set_model(loaded)
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
        old_modules = {h.path: loaded.model.get_submodule(h.path) for h in controller.heads}
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
            self.show_error(self.tr("Cannot use this layer as the head"), _with_hint(str(error), error))
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
        self._give_model_to_try_panel()
        self._update_actions()

    @Slot(int, str)
    def _on_controller_versionChanged(self, version: int, reason: str) -> None:
        if self.results_panel is not None:
            self.results_panel.model_changed(version, reason)

    # ================================================================== data ==============

    def dataset(self) -> DatasetInfo | None:
        if self.data_panel is None:
            return None
        return self.data_panel.dataset()

    def open_data_folder(self, path: str) -> None:
        self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_DATA))
        self._when_panels_ready(lambda: self.data_panel is not None and self.data_panel.load_folder(path))

    @Slot(object)
    def _on_data_panel_datasetChanged(self, info: Any) -> None:
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
        self._update_actions()
        self.runs.dataset_ready(info)

    @Slot(str)
    def _on_data_panel_scanFailed(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)

    # ================================================================== paths / drops =====

    @staticmethod
    def classify_paths(paths: Sequence[str]) -> str:
        """What dropping ``paths`` means: "model", "data", "images" or "" (nothing usable)."""
        for path in paths:
            p = Path(path)
            if p.is_dir() and (p / MODEL_FOLDER_MARKER).is_file():
                return "model"
            if p.is_file() and (p.suffix.lower() in MODEL_FILE_SUFFIXES or p.name == MODEL_FOLDER_MARKER):
                return "model"
        folders = [Path(p) for p in paths if Path(p).is_dir()]
        if any(not _is_flat_image_folder(folder) for folder in folders):
            return "data"  # class subfolders: training images
        if folders or any(Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):
            return "images"  # loose images, or a folder of them: try the model on them
        return ""

    def page_handles_drop(self, widget: QObject, route: str) -> bool:
        """Whether the page under the cursor handles this kind of drop itself."""
        for panel, kind in ((self.data_panel, "data"), (self.try_panel, "images")):
            if panel is not None and route == kind and isinstance(widget, QWidget):
                if widget is panel or panel.isAncestorOf(widget):
                    return True
        return False

    def open_paths(self, paths: Sequence[str]) -> str:
        """Open dropped or given paths: a model, an image folder, or images to try."""
        route = self.classify_paths(paths)
        if route == "model":
            for path in paths:
                p = Path(path)
                if (p.is_dir() and (p / MODEL_FOLDER_MARKER).is_file()) or (
                    p.is_file() and (p.suffix.lower() in MODEL_FILE_SUFFIXES or p.name == MODEL_FOLDER_MARKER)
                ):
                    self.load_model(str(p.parent if p.name == MODEL_FOLDER_MARKER else p))
                    break
        elif route == "data":
            folder = next(p for p in paths if Path(p).is_dir() and not _is_flat_image_folder(Path(p)))
            self.open_data_folder(folder)
        elif route == "images":
            images = [
                p for p in paths
                if Path(p).is_dir() or (Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
            ]
            self.try_images(images)
        else:
            self.statusBar().showMessage(
                self.tr("Nothing to open there: drop a model file, an image folder or images."), 8000
            )
        return route

    def try_images(self, images: Sequence[str]) -> None:
        """Show the Try it page and classify ``images`` there."""
        self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_TRY))

        def send() -> None:
            panel = self.try_panel
            if panel is None:
                return
            panel.add_images(list(images))

        self._when_panels_ready(send)

    def _cached_route(self, paths: list[str]) -> str:
        key = tuple(paths)
        if getattr(self, "_route_cache", ((), ""))[0] != key:
            self._route_cache = (key, self.classify_paths(paths))
        return self._route_cache[1]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        paths = _local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if paths and self._cached_route(paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        paths = _local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if paths and self._cached_route(paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = _local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
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
            self.show_error(self.tr("Invalid training settings"), str(error))
            return
        if config is None:
            self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_TRAIN))
            return
        self.start_training(config)

    # ================================================================== runs ==============

    def set_last_run_dir(self, folder: str | None) -> None:
        """The run the window shows now (Save run as… copies it)."""
        self._last_run_dir = folder
        self._update_actions()

    def show_page(self, key: str) -> None:
        """Bring a page to the front: "data", "train", "results", "try" or "runs"."""
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
        """Train the loaded model on the loaded image folder with ``config`` (a TrainConfig);
        ``resume`` continues the run in ``run_dir`` (the loaded model must be that run's)."""
        if self.is_training() or self._closing:
            return False
        loaded = self.controller.loaded
        dataset = self.dataset()
        if loaded is None:
            self.show_error(self.tr("No model"), self.tr("Load a model first (the list on the left, or File ▸ Open model)."))
            return False
        if dataset is None:
            self.show_error(self.tr("No images"), self.tr("Choose an image folder first (the Data page, or drop a folder on the window)."))
            return False
        if self.is_loading() or self.is_model_busy():
            self.statusBar().showMessage(self.tr("Wait for the current job to finish."), 5000)
            return False
        if not self.controller.heads:
            self.show_error(self.tr("No head"), self.tr("No classifier head is known; right-click a layer → Use as head."))
            return False
        names = tuple(dataset.class_names)
        n = len(names)
        wrong = [h for h in self.controller.heads if h.out_features != n]
        if resume:
            wrong = []  # the run's own head; fit refuses a folder of other classes with a sentence
        if wrong:
            from headswap_gui.core.heads import HeadSpec

            old = wrong[0].out_features
            if not self.replace_head(
                HeadSpec(), n, names, text=self.tr("Replace head for training (Linear, {n} classes)").format(n=n),
                seed=config.seed,
            ):
                return False
            self.statusBar().showMessage(
                self.tr("The head had {old} outputs; it was replaced with a Linear head for the {n} classes "
                        "(Edit ▸ Undo puts it back, Ctrl+H chooses another design).").format(old=old, n=n),
                20000,
            )
        elif loaded.class_names != names:
            loaded.class_names = names
        run_dir = run_dir if run_dir is not None else self._new_run_dir()
        try:
            self.settings.set_last_hyperparameters(config.to_dict())
        except AttributeError:
            pass
        self._train_config, self._train_dataset = config, dataset
        self._last_finished = None
        if self.plots_view is not None and not resume:  # a resumed run continues its restored curves
            self.plots_view.clear()
        # The last results stay until the run has a better answer; they say they are older.
        self.controller.bump_version("a new run started")

        heads = self.controller.heads

        def factory(stop: threading.Event) -> Iterator[object]:
            from headswap_gui.core import training

            return training.fit(loaded, dataset, config, run_dir, stop=stop, heads=heads, resume=resume)

        runner = self._start_runner("train", leased(self.model_lease, "train", factory))
        runner.eventEmitted.connect(self._on_train_runner_eventEmitted)
        runner.failed.connect(self._on_train_runner_failed)
        runner.finished.connect(self._on_train_runner_finished)
        self.controller.set_busy(True)
        self._set_training_ui(True)
        self.tabs.setCurrentIndex(self._tab_keys.index(_TAB_TRAIN))
        self.trainingStarted.emit()
        return True

    def stop_training(self) -> None:
        runner = self._runners.get("train")
        if runner is not None and runner.is_running():
            runner.request_stop()
            self.statusBar().showMessage(self.tr("Stopping after the current step…"))

    def _new_run_dir(self) -> Path:
        from headswap_gui.core.run_index import new_run_folder

        return new_run_folder(self._runs_root)  # None: the runs folder the CLI lists too

    def _set_training_ui(self, running: bool) -> None:
        if self.training_panel is not None:
            self.training_panel.set_running(running)
        self.model_panel.set_editing_enabled(not running)
        self.model_panel.set_training(running)
        if self.try_panel is not None:
            if running:
                self.try_panel.set_model(None)  # the worker owns the model now
            self.try_panel.setEnabled(not running)
        if self.data_panel is not None:
            self.data_panel.setEnabled(not running)
        self.runs_panel.set_busy(running)
        if not running:
            self.runs_panel.refresh()  # the finished run with its figures (a new one shows at RunStarted)
        self._update_actions()

    @Slot(object)
    def _on_train_runner_eventEmitted(self, event: object) -> None:
        if not self._is_current("train"):
            return
        from headswap_gui.core.events import Note, RunFinished, RunStarted

        if self.training_panel is not None:
            self.training_panel.add_event(event)
        if self.plots_view is not None:
            self.plots_view.add_event(event)
        if isinstance(event, RunStarted):
            self._last_run_dir = event.run_dir
            self.runs_panel.refresh()
            if event.run_dir:
                self.runs_panel.select_folder(event.run_dir)
            self._device_text = event.device
            self._update_device_label()
            self.controller.refresh_tree()  # the backbone is frozen now: show it
            self.statusBar().showMessage(
                self.tr("Training on {device}: {train} training and {val} validation images.").format(
                    device=event.device, train=f"{event.train_size:,}", val=f"{event.val_size:,}"
                ),
                10000,
            )
        elif isinstance(event, Note):
            self.controller.refresh_tree()
            self.statusBar().showMessage(event.message, 10000)
        elif isinstance(event, RunFinished):
            self._last_finished = event
            if event.run_dir:
                self._last_run_dir = event.run_dir
            self.statusBar().showMessage(event.message, 20000)

    @Slot(str)
    def _on_train_runner_failed(self, message: str) -> None:
        if not self._is_current("train"):
            return
        if not self._closing:
            self.show_error(self.tr("Training stopped with an error"), _with_hint(message, self._runners["train"].error))

    @Slot()
    def _on_train_runner_finished(self) -> None:
        if not self._is_current("train"):
            return
        self.controller.set_busy(False)
        self._set_training_ui(False)
        loaded = self.controller.loaded
        if loaded is not None:
            self.controller.refresh_tree()
            self._give_model_to_try_panel()
        finished = self._last_finished
        config = self._train_config
        if finished is not None and finished.best_epoch is not None:
            self.controller.bump_version(f"run {Path(finished.run_dir or '').name} trained it")
            self.controller.mark_heads_trained()
        if (
            loaded is not None and finished is not None and finished.best_epoch is not None
            and config is not None and config.image_size
            and config.image_size != loaded.preprocessing.input_size
        ):
            # The weights now expect the training size; Try it, export and the run folder agree.
            loaded.preprocessing = loaded.preprocessing.with_input_size(config.image_size)
            self._give_model_to_try_panel()
        self.trainingFinished.emit(finished)
        if (
            not self._closing
            and finished is not None
            and finished.best_epoch is not None
            and loaded is not None
            and self._train_dataset is not None
        ):
            self.evaluate_model(self._train_config, self._train_dataset)

    def evaluate_model(self, config: Any, dataset: Any) -> None:
        """Evaluate the model on the validation split off-thread; fills the Results page."""
        loaded = self.controller.loaded
        if loaded is None:
            return
        self._train_config, self._train_dataset = config, dataset  # what the results describe
        runner = self._start_runner(
            "eval", leased(self.model_lease, "evaluate", _evaluation_events(loaded, dataset, config, self.controller.version)), stop_grace_s=0.0
        )
        runner.eventEmitted.connect(self._on_eval_runner_eventEmitted)
        runner.failed.connect(self._on_eval_runner_failed)
        self.controller.set_busy(True)
        runner.finished.connect(lambda: self.controller.set_busy(self.is_training()))
        self._update_actions()

    @Slot(object)
    def _on_eval_runner_eventEmitted(self, event: object) -> None:
        if not self._is_current("eval"):
            return
        if isinstance(event, LoadStage):
            self.statusBar().showMessage(event.text, 10000)
        elif isinstance(event, EvaluationReady):
            self._last_eval_paths = event.paths
            if self.results_panel is not None:
                result = event.result
                self.results_panel.set_results(
                    event.class_names, event.paths, result.targets, result.predictions,
                    result.probabilities, result.losses, model_version=event.model_version,
                )
            self.statusBar().showMessage(
                self.tr("Validation accuracy {acc:.1%} on {n} images — see the Results page.").format(
                    acc=event.result.accuracy, n=len(event.paths)
                ),
                15000,
            )
            self.resultsReady.emit(event)

    @Slot(str)
    def _on_eval_runner_failed(self, message: str) -> None:
        if self._is_current("eval") and not self._closing:
            self.show_error(self.tr("Could not evaluate the model"), message)

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
        source = self._last_run_dir
        if not source or not Path(source).is_dir():
            self.show_error(self.tr("No run to save"), self.tr("Train a model first; each run is saved in its own folder."))
            return None
        if target is None:
            target = SaveRunPrompt.ask(self, str(Path.home() / Path(source).name))
        if not target:
            return None
        from headswap_gui.core.errors import HeadswapError
        from headswap_gui.core.run_store import copy_run

        try:
            copy_run(source, target)  # the committed epoch only: no lock or temp files
        except HeadswapError as error:
            self.show_error(self.tr("Could not save the run"), str(error))
            return None
        self.statusBar().showMessage(self.tr("Run saved to {path}; open it as a model to continue.").format(path=target), 10000)
        return target

    @Slot()
    def _on_export_action_triggered(self) -> None:
        loaded = self.controller.loaded
        if loaded is None or self.is_model_busy():
            return
        self.export_model(None)

    def export_model(self, answer: tuple[str, str] | None) -> bool:
        """Export the model as ``(format, path)`` (asked for when ``None``) on a worker thread;
        the parity check runs on validation images of the last evaluation when there are any."""
        loaded = self.controller.loaded
        if loaded is None or self.is_model_busy():
            return False
        if answer is None:
            run = Path(self._last_run_dir).name if self._last_run_dir else ""
            name = run or Path(loaded.source.replace(":", "_")).name
            answer = ExportPrompt.ask(self, str(Path.home() / f"{name}.onnx"))
        if answer is None:
            return False
        fmt, path = answer
        images = list(self._last_eval_paths[:8])
        runner = self._start_runner(
            "export", leased(self.model_lease, "export", _export_events(loaded, fmt, path, images)), stop_grace_s=0.0
        )
        runner.eventEmitted.connect(self._on_export_runner_eventEmitted)
        runner.failed.connect(self._on_export_runner_failed)
        self._update_actions()
        return True

    @Slot(object)
    def _on_export_runner_eventEmitted(self, event: object) -> None:
        if isinstance(event, LoadStage):
            self.statusBar().showMessage(event.text)
        elif isinstance(event, _Done):
            report = event.value
            describe = getattr(report, "describe", None)
            text = describe() if callable(describe) else str(report)
            self.last_export = report
            self.statusBar().showMessage(self.tr("Exported: {text}").format(text=text), 20000)

    @Slot(str)
    def _on_export_runner_failed(self, message: str) -> None:
        if not self._closing:
            self.show_error(self.tr("Export failed"), message)

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
    def _on_about_action_triggered(self) -> None:
        QMessageBox.about(
            self,
            self.tr("About headswap"),
            f"<h3>headswap {__version__}</h3><p>Fine-tune a pretrained image classifier by replacing "
            "its classifier head.</p><p>Load a model, choose an image folder with one subfolder per "
            "class, and press Start. Drop models, folders or images anywhere on the window.</p>",
        )

    # ================================================================== status ============

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
            has_run=bool(self._last_run_dir),
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
        self.stop_action.setEnabled(states.stop_training)
        self.save_run_action.setEnabled(states.save_run)
        self.export_action.setEnabled(states.export)
        self.model_panel.set_editing_enabled(not busy)

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
        """Stop every job of the window and wait for each (window close, ``aboutToQuit``)."""
        self._closing = True
        for runner in running_runners():  # every job of the process, the panels' too: all stop at once
            runner.request_stop()
        runners = [r for r in self._runners.values() if r.is_running()]
        ok = all([runner.wait(timeout_ms) for runner in runners])
        for panel in (self.data_panel, self.results_panel, self.try_panel, self.model_panel):
            if panel is not None:
                ok = panel.shutdown(timeout_ms) and ok
        return ok


def _is_flat_image_folder(folder: Path) -> bool:
    """A folder with images directly inside and no subfolders (not a class-per-folder set)."""
    try:
        with os.scandir(folder) as entries:
            has_image = False
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    return False
                has_image = has_image or Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
            return has_image
    except OSError:
        return False


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

