"""Runs are first-class: a stopped run shows on the Runs page, reopens in a new window with its
curves and results, and resumes to the end."""

from __future__ import annotations

import json
from pathlib import Path

from test_jobs import colour_folder  # noqa: F401 - a fixture
from test_main_window import LOAD_MS, TINY, load, open_folder

from headswap_gui.core import training
from headswap_gui.gui.main_window import MainWindow
from headswap_gui.gui.settings import AppSettings


def test_train_stop_reopen_in_a_new_window_and_resume(qtbot, window, colour_folder, tmp_path):  # noqa: F811
    load(qtbot, window, TINY)
    open_folder(qtbot, window, colour_folder)
    config = training.TrainConfig(epochs=30, batch_size=2, image_size=32, device="cpu", val_fraction=0.34,
                                  freeze="full", cache_features="off", lr=1e-3)
    assert window.start_training(config)
    qtbot.waitUntil(lambda: window.plots_view.epoch_count() >= 2, timeout=LOAD_MS)
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS) as finished:
        window.stop_training()
    assert finished.args[0].reason == "stopped" and finished.args[0].best_epoch is not None
    folder = finished.args[0].run_dir
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)
    [run] = window.runs_panel.runs()
    assert run.folder == folder and run.status == "stopped" and run.best_val_accuracy is not None
    epochs_done = run.epochs_done
    assert epochs_done >= 2
    window.shutdown(10_000)
    window.close()

    again = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")  # "after restarting the window"
    qtbot.addWidget(again)
    again.show()
    try:
        assert [r.folder for r in again.runs_panel.runs()] == [folder]
        assert again.runs_panel.select_folder(folder) and again.runs_panel.resume_button.isEnabled()
        with qtbot.waitSignal(again.resultsReady, timeout=LOAD_MS):
            again.runs_panel.open_button.click()
        assert again.controller.loaded.source == folder
        assert again.plots_view.epoch_count() == epochs_done  # the curves are back
        assert again.results_panel.has_results() and not again.results_panel.is_stale()
        assert again.training_panel.config().epochs == 30
        qtbot.waitUntil(lambda: not again.is_model_busy(), timeout=LOAD_MS)

        with qtbot.waitSignal(again.trainingFinished, timeout=LOAD_MS) as resumed:
            assert again.resume_run(folder)
        assert resumed.args[0].reason == "completed", resumed.args[0].message
        manifest = json.loads((Path(folder) / "headswap.json").read_text())
        assert [r["epoch"] for r in manifest["epochs"]] == list(range(1, 31))
        assert again.plots_view.epoch_count() == 30
        qtbot.waitUntil(lambda: not again.is_model_busy(), timeout=LOAD_MS)
        assert again.runs_panel.runs()[0].status == "completed"

        assert again.runs_panel.select_folder(folder) and again.runs_panel.compare_button.isEnabled()
        again.runs_panel.compare_button.click()  # its curves beside the current ones
        assert again.plots_view.comparison() == (Path(folder).name, 30)
        assert again.tabs.currentIndex() == 1
    finally:
        again.shutdown(10_000)
