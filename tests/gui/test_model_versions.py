"""Results say which model they describe: a head swap or a new run marks them as older."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel
from test_jobs import colour_folder  # noqa: F401 - a fixture
from test_main_window import LOAD_MS, TINY, load, open_folder

from headswap_gui.core import training
from headswap_gui.core.heads import HeadSpec
from headswap_gui.gui.prompts import ReplaceTrainedHeadQuestion


def test_results_are_marked_stale_after_a_head_swap_and_during_a_new_run(qtbot, window, colour_folder, monkeypatch):  # noqa: F811
    load(qtbot, window, TINY)
    open_folder(qtbot, window, colour_folder)
    config = training.TrainConfig(epochs=1, batch_size=2, image_size=32, device="cpu", val_fraction=0.34)
    with qtbot.waitSignal(window.resultsReady, timeout=LOAD_MS):
        assert window.start_training(config)
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)
    panel = window.results_panel
    assert panel.has_results() and not panel.is_stale()

    asked: list[bool] = []
    monkeypatch.setattr(ReplaceTrainedHeadQuestion, "ask", classmethod(lambda cls, parent: asked.append(False) or False))
    trained = window.controller.loaded.model.get_submodule("classifier")
    assert not window.replace_head(HeadSpec("mlp", (8,)), 2, ("cats", "dogs"))  # "No": the trained head stays
    assert asked == [False] and window.controller.loaded.model.get_submodule("classifier") is trained
    monkeypatch.setattr(ReplaceTrainedHeadQuestion, "ask", classmethod(lambda cls, parent: asked.append(True) or True))
    assert window.replace_head(HeadSpec("mlp", (8,)), 2, ("cats", "dogs"))
    assert panel.has_results() and panel.is_stale()
    assert "the head was replaced" in panel.findChild(type(panel._stale_label), "resultsStaleLabel").text()
    try_status = window.try_panel.findChild(QLabel, "tryStatusLabel")
    assert "untrained" in try_status.text()  # Try it says its predictions come from random weights

    window.undo_action.trigger()  # another change of the model: still not what the results saw
    assert panel.is_stale() and window.controller.loaded.model.get_submodule("classifier") is trained
    assert window.controller.head_is_trained()  # undo brought the trained head back: asking again
    assert "untrained" not in try_status.text()
    window.redo_action.trigger()
    assert "untrained" in try_status.text()  # the same random head again
    window.undo_action.trigger()

    with qtbot.waitSignal(window.resultsReady, timeout=LOAD_MS):
        assert window.start_training(config)
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)
    assert panel.has_results() and not panel.is_stale()  # fresh results of the trained model
