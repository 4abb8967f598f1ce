"""Training → Run on a cluster… writes the window's run as a job folder: the config file
``headswap train --config`` reads, a torchrun script and a Slurm script."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QApplication, QMenu

from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.run_spec import read_train_spec
from headswap_gui.gui.actions import WorkbenchFacts, action_states
from headswap_gui.gui.cluster_dialog import ClusterJobDialog
from headswap_gui.gui.main_window import MainWindow
from headswap_gui.gui.prompts import ClusterFolderPrompt

TINY = "timm:test_efficientnet"
LOAD_MS = 60_000


def test_run_on_a_cluster_writes_the_windows_settings(qtbot, window: MainWindow, image_folder: Path, tmp_path,
                                                     monkeypatch) -> None:
    assert not window.cluster_action.isEnabled()  # nothing to run yet
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        assert window.load_model(TINY)
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=5000)
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        window.open_data_folder(str(image_folder))
    assert window.cluster_action.isEnabled()
    assert window.cluster_action in window.menuBar().findChild(QMenu, "trainingMenu").actions()
    panel = window.training_panel
    panel.set_config(replace(panel.config(), epochs=7, batch_size=12, lr=3e-3, freeze="full", seed=5))
    settings = window.current_training_config()

    folder = tmp_path / "job"
    monkeypatch.setattr(ClusterFolderPrompt, "ask", classmethod(lambda cls, parent, start="": str(folder)))
    window.cluster_action.trigger()
    dialog = window.findChild(ClusterJobDialog, "clusterJobDialog")
    assert dialog is not None and dialog.isVisible()

    job = dialog.job
    assert {p.name for p in folder.iterdir()} == {"headswap-train.json", "run-torchrun.sh", "headswap.sbatch"}
    spec = read_train_spec(job.config_file)
    assert spec.config == settings and spec.config.epochs == 7 and spec.config.batch_size == 12
    assert spec.source == TINY and spec.data == str(image_folder) and spec.output == str(folder / "run")
    assert spec.head == HeadSpec()  # the 1000-class head does not fit 2 classes: Start would put in a linear one
    for script in (job.torchrun_script, job.sbatch_script):
        assert os.access(script, os.X_OK) and str(job.config_file) in script.read_text()
    text = dialog.text.toPlainText()
    assert str(job.config_file) in text and str(job.sbatch_script) in text and job.command in text
    dialog.copy_button.click()
    assert QApplication.clipboard().text() == job.command
    dialog.close()


def test_run_on_a_cluster_needs_a_model_and_images() -> None:
    assert not action_states(WorkbenchFacts(has_model=True)).run_on_cluster
    assert not action_states(WorkbenchFacts(has_data=True)).run_on_cluster
    assert action_states(WorkbenchFacts(has_model=True, has_data=True, has_heads=True)).run_on_cluster
    # it reads the model's source, not its weights: a running job does not stand in its way
    assert action_states(WorkbenchFacts(has_model=True, has_data=True, training=True, model_busy=True)).run_on_cluster
