"""A feature extractor in the window: the empty slot is shown as the head-to-be, and Start
attaches a real head there and trains it."""

from __future__ import annotations

import timm
import torch
from PySide6.QtWidgets import QLabel
from test_jobs import colour_folder  # noqa: F401 - a fixture
from test_main_window import LOAD_MS, load, open_folder

from headswap_gui.core import training
from headswap_gui.gui.layer_tree_model import PATH_ROLE
from headswap_gui.gui.prompts import TrustPrompt


def test_a_feature_extractor_is_announced_highlighted_and_trained(qtbot, window, colour_folder, tmp_path, monkeypatch):  # noqa: F811
    backbone = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=28,
                                 depth=1, embed_dim=24, num_heads=2)
    path = tmp_path / "features.pt"
    torch.save(backbone, path)
    monkeypatch.setattr(TrustPrompt, "ask", classmethod(lambda cls, parent, path: True))
    load(qtbot, window, str(path))
    [head] = window.controller.heads
    assert (head.path, head.role, head.in_features) == ("head", "new", 24)
    status = window.model_panel.findChild(QLabel, "modelStatusLabel") or window.model_panel.status_label
    assert "Feature extractor" in status.text() and "attached at head" in status.text()
    tree = window.model_panel.tree_model
    assert [tree.data(i, PATH_ROLE) for i in tree.head_indexes()] == ["head"]  # the slot is highlighted

    open_folder(qtbot, window, colour_folder)
    config = training.TrainConfig(epochs=1, batch_size=2, image_size=28, device="cpu", val_fraction=0.34)
    with qtbot.waitSignal(window.resultsReady, timeout=LOAD_MS):
        assert window.start_training(config), window.last_error
    [trained] = window.controller.heads
    assert (trained.path, trained.role, trained.out_features) == ("head", "main", 2)
    assert window.results_panel.has_results()
    window.undo_action.trigger()  # the empty slot comes back
    assert type(window.controller.loaded.model.get_submodule("head")) is torch.nn.Identity
