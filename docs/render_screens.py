"""Render the window's main states to PNG for the documentation, offscreen.

    python docs/render_screens.py [--out docs] [--dark] [--sizes 1024x768,1280x720,1920x1080]

At 1400×900 it writes ``screen-model.png`` (the demo model, its head highlighted),
``screen-head-dialog.png`` (the Replace head dialog over the window), ``screen-training.png``
(the Train page after a short demo run, live plots filled), ``screen-results.png`` (the
Results page of that run) and ``screen-runs.png`` (the Runs page: that run and a stopped one).
At each of ``--sizes`` it writes ``screens/<page>-<W>x<H>.png`` for the pages a user goes
through (model, data, train during a run, results and try it, each with and without heatmaps,
check labels with two changes queued, the map of the digits), so a
layout that breaks on a small
or a large screen is seen, not guessed.
Runs the real demo: the digits images and the run folder go to a temporary directory, and
the settings are private, so nothing of the user's is read or changed. Takes about a minute
on a laptop CPU (the one-time feature pass over 1,797 images dominates).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SIZE = (1400, 900)
SIZES = "1024x768,1280x720,1920x1080"
TIMEOUT_MS = 600_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent), help="folder for the PNGs")
    parser.add_argument("--dark", action="store_true", help="render with the dark palette")
    parser.add_argument("--sizes", default=SIZES, help="window sizes for the per-page shots, WxH,…")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in item.split("x")) for item in args.sizes.split(",") if item]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="headswap-screens-"))

    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import (
        QCoreApplication,
        QEvent,
        QEventLoop,
        QPoint,
        QPointF,
        QSettings,
        Qt,
        QTimer,
        SignalInstance,
    )
    from PySide6.QtGui import QColor, QMouseEvent, QPainter
    from PySide6.QtWidgets import QApplication, QWidget

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QCoreApplication.setOrganizationName("headswap-docs")
    QCoreApplication.setApplicationName("headswap-screens")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from headswap_gui.app import _dark_palette, apply_color_scheme

    apply_color_scheme(app)
    if args.dark:
        from PySide6.QtGui import QPalette

        app.setPalette(_dark_palette(QPalette, QColor))

    from headswap_gui.gui.main_window import DEMO_TRAIN_SETTINGS, MainWindow

    def wait_for(signal: SignalInstance, what: str) -> tuple:
        loop = QEventLoop()
        received: list[tuple] = []

        def done(*values: object) -> None:
            received.append(values)
            loop.quit()

        signal.connect(done)
        QTimer.singleShot(TIMEOUT_MS, loop.quit)
        loop.exec()
        signal.disconnect(done)
        if not received:
            raise SystemExit(f"timed out waiting for {what}")
        return received[0]

    def settle(ms: int = 400) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def save(widget: QWidget, name: str) -> None:
        settle()
        path = out / name
        widget.grab().save(str(path))
        print(f"wrote {path}")

    def shoot(page: str) -> None:
        """The current page at every size, then back to the documentation size."""
        folder = out / "screens"
        folder.mkdir(exist_ok=True)
        for width, height in sizes:
            window.resize(width, height)
            settle(300)
            path = folder / f"{page}-{width}x{height}.png"
            window.grab().save(str(path))
            print(f"wrote {path}")
        window.resize(*SIZE)
        settle(200)

    window = MainWindow(runs_root=work / "runs")
    window.demo_data_dir = str(work / "digits")
    window.resize(*SIZE)
    window.show()
    settle(200)

    # 1. The demo model, its head highlighted; the digits on the Data page.
    window.start_up(demo=True)
    if window.controller.loaded is None:
        wait_for(window.modelLoaded, "the demo model")
    if window.dataset() is None:
        wait_for(window.demoDataReady, "the demo images")
    if window.model_panel.zoo_count() < 2:
        wait_for(window.model_panel.zooLoaded, "the model zoo")
    window.model_panel.select_source("demo")
    window.model_panel.focus_head()
    window.tabs.setCurrentIndex(0)
    if window.data_panel is not None and hasattr(window.data_panel, "thumbnails_loading"):
        for _ in range(50):
            if not window.data_panel.thumbnails_loading():
                break
            settle(100)
    save(window, "screen-model.png")
    shoot("model")
    window.tabs.setCurrentIndex(window._tab_keys.index("data"))
    shoot("data")
    window.tabs.setCurrentIndex(0)

    # 2. The Replace head dialog, pre-filled from the digits, an MLP design chosen.
    from headswap_gui.gui.head_dialog import HeadDialog

    loaded = window.controller.loaded
    heads = window.controller.heads
    dialog = HeadDialog(
        window, heads=heads, old_modules={h.path: loaded.model.get_submodule(h.path) for h in heads},
        num_classes=len(window.dataset().class_names), class_names=window.dataset().class_names,
        dataset_note="from the image folder (10 classes)",
    )
    dialog.design_combo.setCurrentIndex(dialog.design_combo.findData("mlp"))
    dialog.hidden_edit.setText("512,256")
    dialog.dropout_spin.setValue(0.2)
    dialog.show()
    settle()
    canvas = window.grab()
    shade = QPainter(canvas)
    shade.fillRect(canvas.rect(), QColor(0, 0, 0, 90))
    picture = dialog.grab()
    corner = QPoint((canvas.width() - picture.width()) // 2, (canvas.height() - picture.height()) // 2)
    shade.fillRect(picture.rect().translated(corner + QPoint(6, 6)), QColor(0, 0, 0, 70))
    shade.drawPixmap(corner, picture)
    shade.end()
    canvas.save(str(out / "screen-head-dialog.png"))
    print(f"wrote {out / 'screen-head-dialog.png'}")
    dialog.close()
    dialog.deleteLater()

    # 3. A short real demo run (every step reported, so the loss curve is dense).
    window.apply_training_settings({**DEMO_TRAIN_SETTINGS, "epochs": 8, "max_step_events_per_second": 1000.0})
    config = window.training_panel.config()
    window.start_training(config)
    window.tabs.setCurrentIndex(window._tab_keys.index("train"))
    from headswap_gui.core.events import EpochMetrics

    runner = window.jobs.runner("train")
    mid_run = QEventLoop()
    runner.eventEmitted.connect(
        lambda event: mid_run.quit() if isinstance(event, EpochMetrics) and event.epoch >= 3 else None
    )
    QTimer.singleShot(TIMEOUT_MS, mid_run.quit)
    mid_run.exec()
    shoot("train")  # during the run: epochs 4… still to come
    if window.is_training():  # it may have ended during the shots
        wait_for(window.trainingFinished, "the training run")
    save(window, "screen-training.png")

    # 4. The evaluation on the validation images.
    if not window.results_panel.has_results():
        wait_for(window.resultsReady, "the evaluation")
    window.tabs.setCurrentIndex(2)
    if window.results_panel is not None:
        rows = window.results_panel.class_metrics()
        worst = min(range(len(rows)), key=lambda i: rows[i][2]) if rows else None
        matrix = window.results_panel.confusion_matrix()
        if worst is not None and matrix.size:
            off = [(matrix[worst, j], j) for j in range(matrix.shape[1]) if j != worst]
            if off and max(off)[0] > 0:
                window.results_panel.select_cell(worst, max(off)[1])
        for _ in range(50):
            if not window.results_panel.thumbnails_loading():
                break
            settle(100)
    save(window, "screen-results.png")
    shoot("results")
    window.results_panel.heatmaps.set_enabled(True)  # Grad-CAM over the selected cell's images
    wait_for(window.results_panel.heatmaps.heatmapsReady, "the Results heatmaps")
    shoot("results-heatmap")
    window.results_panel.heatmaps.set_enabled(False)
    window.try_images(sorted(str(p) for p in (work / "digits").rglob("*.png"))[:12])
    wait_for(window.try_panel.predictionsReady, "the Try it predictions")
    shoot("try")
    window.try_panel.set_heatmap_enabled(True)  # Grad-CAM of each row's top class
    wait_for(window.try_panel.heatmapsReady, "the Try it heatmaps")
    shoot("try-heatmap")
    window.try_panel.set_heatmap_enabled(False)

    # The Check labels page: the run's backbone ranks the digits' labels; the two worst queued to move.
    window.show_page("labels")
    labels = window.labels_panel
    labels.check_labels()
    wait_for(labels.checkFinished, "the label check")
    worst = [issue for issue in labels.shown_issues() if issue.kind == "label" and issue.flagged][:2]
    for issue in worst:
        labels.queue_moves([issue.path], issue.suggested_label)
    labels.select_paths([issue.path for issue in worst[:1]])
    for _ in range(50):
        if not labels.thumbnails_loading():
            break
        settle(100)
    shoot("labels")

    # The Map page: the run's features of the digits by t-SNE, the model's mistakes ringed, a
    # lasso pick around one of them and the pointer over it.
    import numpy as np

    window.show_page("map")
    atlas = window.map_panel
    atlas.compute()
    wait_for(atlas.mapReady, "the map")
    info = atlas.map_info()
    wrong = [int(i) for i in info.misclassified.nonzero()[0]] or [0]
    middle = np.median(info.coordinates, axis=0)  # a mistake in the thick of the map, clear of the legend
    wrong.sort(key=lambda i: float(((info.coordinates[i] - middle) ** 2).sum()))
    x, y = info.coordinates[wrong[0]]
    reach = 0.04 * float(info.coordinates.max() - info.coordinates.min())
    atlas.select_polygon([(x - reach, y - reach), (x + reach, y - reach), (x + reach, y + reach), (x - reach, y + reach)])
    at = atlas.point_position(wrong[0])
    viewport = atlas.plot_viewport()
    QApplication.sendEvent(viewport, QMouseEvent(QEvent.Type.MouseMove, at, QPointF(viewport.mapToGlobal(at.toPoint())),
                                                 Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                                 Qt.KeyboardModifier.NoModifier))
    settle(300)  # the hovered image's thumbnail
    shoot("map")

    # 5. The Runs page with that run (and a second, stopped one, to show the statuses).
    window.apply_training_settings({**DEMO_TRAIN_SETTINGS, "epochs": 30})
    window.start_training(window.training_panel.config())
    wait_for(window.runs_panel.table.model().rowsInserted, "the second run to start")
    window.stop_training()
    wait_for(window.trainingFinished, "the second run to stop")
    window.runs_panel.refresh()
    window.show_page("runs")
    save(window, "screen-runs.png")

    window.close()
    app.processEvents()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
