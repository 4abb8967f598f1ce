"""Reopening, resuming and comparing saved runs in the window.

Reopening a run is a chain of jobs the window already knows how to run: load the run's
model, then scan its image folder, then evaluate (or, to resume, train on). This controller
holds the one run being reopened between those steps and moves it on as each step reports
back; the window tells it when a load finished or failed and when a dataset is ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QObject

from headswap_gui.gui.messages import explain

if TYPE_CHECKING:
    from headswap_gui.gui.main_window import MainWindow


class RunController(QObject):
    """The window's run logic: :meth:`open` (optionally resuming) and :meth:`compare`."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self._pending: dict[str, Any] | None = None  # {folder, manifest, resume, config}

    @staticmethod
    def tr(text: str) -> str:  # noqa: D102 - Qt's translation hook
        return QCoreApplication.translate("RunController", text)

    def open(self, folder: str, *, resume: bool = False) -> bool:
        """Reopen a saved run: its model, then its curves and image folder, then its results
        (the validation split evaluated again); with ``resume``, continue training it instead."""
        from headswap_gui.core.errors import HeadswapError
        from headswap_gui.core.run_manifest import read_manifest

        window = self._window
        try:
            manifest = read_manifest(folder)
        except HeadswapError as error:
            window.show_error(self.tr("Cannot open the run"), explain(error))
            return False
        self._pending = {"folder": str(folder), "manifest": manifest, "resume": resume}
        if not window.load_model(str(folder)):
            self._pending = None
            return False
        return True

    def compare(self, folder: str) -> bool:
        """Overlay the validation curves of the run in ``folder`` on the Train page."""
        from headswap_gui.core.errors import HeadswapError
        from headswap_gui.core.run_manifest import read_manifest

        window = self._window
        try:
            records = read_manifest(folder).get("epochs") or []
        except HeadswapError as error:
            window.show_error(self.tr("Cannot compare with the run"), explain(error))
            return False
        if window.plots_view is None or not records:
            return False
        window.plots_view.set_comparison(
            Path(folder).name, [r["epoch"] for r in records], [r["val_accuracy"] for r in records],
            [r["val_loss"] for r in records],
        )
        window.show_page("train")
        window.statusBar().showMessage(
            self.tr("The dashed curves are run {name}'s validation accuracy and loss.").format(name=Path(folder).name),
            10000,
        )
        return True

    # -- steps, reported by the window -------------------------------------------------------

    def load_failed(self) -> None:
        self._pending = None

    def model_loaded(self, loaded: Any) -> None:
        """The load job has ended: restore settings and curves, then find the image folder."""
        pending = self._pending
        if pending is None:
            return
        if loaded is None or str(loaded.source) != pending["folder"]:
            self._pending = None  # another model was loaded meanwhile
            return
        from headswap_gui.core.events import EpochMetrics
        from headswap_gui.core.training import TrainConfig

        window = self._window
        manifest = pending["manifest"]
        config = TrainConfig.from_dict(manifest.get("training") or {})
        pending["config"] = config
        window.set_last_run_dir(pending["folder"])
        window.training_panel.set_config(config)
        window.plots_view.clear()
        window.plots_view.add_events(
            EpochMetrics(
                epoch=int(r["epoch"]), epochs=config.epochs, train_loss=r["train_loss"],
                train_accuracy=r["train_accuracy"], val_loss=r["val_loss"], val_accuracy=r["val_accuracy"],
                lr=r["lr"], images_per_second=r.get("images_per_second", 0.0), seconds=r.get("seconds", 0.0),
                eta_seconds=0.0, is_best=bool(r.get("is_best")),
            )
            for r in manifest.get("epochs") or []
        )
        root = manifest.get("dataset_root")
        if not root or not Path(root).is_dir():
            self._pending = None
            window.statusBar().showMessage(
                self.tr("Opened the run's model and curves; its image folder {root} is not there, so the results "
                        "cannot be recomputed.").format(root=root or "?"), 15000,
            )
            return
        current = window.dataset()
        if current is not None and Path(current.root) == Path(root):
            self.dataset_ready(current)
        else:
            window.open_data_folder(root)

    def dataset_ready(self, info: Any) -> None:
        """The run's image folder is scanned: evaluate the reopened model, or resume."""
        pending = self._pending
        if pending is None or info is None or "config" not in pending:
            return
        if Path(info.root) != Path(pending["manifest"].get("dataset_root") or ""):
            return
        self._pending = None
        window = self._window
        if pending["resume"]:
            window.start_training(pending["config"], run_dir=Path(pending["folder"]), resume=True)
            return
        window.evaluate_model(pending["config"], info)
        window.statusBar().showMessage(
            self.tr("Opened run {name}: model, curves and (being computed) results.").format(
                name=Path(pending["folder"]).name), 10000,
        )
