"""The model panel on a real controller: every head in sight after a load, plain head text,
and the zoo's ticks for models whose pretrained weights are on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon, QUndoStack

from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.sources import load_model
from headswap_gui.gui.commands import ModelController, SwapHeadCommand
from headswap_gui.gui.model_panel import CACHED_ROLE, ModelPanel
from headswap_gui.gui.worker import running_runners

TINY = "test_efficientnet"  # timm's test model, weights on the Hub only


@pytest.fixture
def controller(qapp) -> ModelController:
    return ModelController()


@pytest.fixture
def panel(qtbot, controller: ModelController) -> ModelPanel:
    panel = ModelPanel(controller)
    qtbot.addWidget(panel)
    panel.resize(460, 900)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_every_googlenet_head_is_open_and_named_in_full(qtbot, controller: ModelController, panel: ModelPanel) -> None:
    loaded = load_model("torchvision:googlenet", structure_only=True)  # aux_logits on, weights never allocated
    controller.set_model(loaded, loaded.find_heads())
    view = panel.tree_view
    for path, label in (("aux1.fc2", "aux1.fc2 (aux head)"), ("aux2.fc2", "aux2.fc2 (aux head)"), ("fc", "fc")):
        index = panel.proxy_index_for_path(path)
        assert index.data() == label
        parent = index.parent()
        while parent.isValid():  # its whole branch is open...
            assert view.isExpanded(parent), parent.data()
            parent = parent.parent()
        # ...and the Name column is wide enough for the label, icon and bold text (not "fc2…").
        assert view.visualRect(index).width() >= view.sizeHintForIndex(index).width(), label
    assert panel.selected_path() == "fc"
    view.collapseAll()
    panel.show_head_action.trigger()  # "Show the head" opens them all again
    assert all(view.isExpanded(panel.proxy_index_for_path(p).parent()) for p in ("aux1.fc2", "aux2.fc2"))


def test_a_replaced_head_reads_plainly(qtbot, controller: ModelController, panel: ModelPanel) -> None:
    loaded = load_model(f"timm:{TINY}")
    controller.set_model(loaded, loaded.find_heads())
    width = controller.main_head().in_features
    stack = QUndoStack()
    for classes, was in ((3, "was Linear with 1,000 outputs"), (5, "was Linear with 3 outputs")):
        stack.push(SwapHeadCommand(controller, classes, HeadSpec(), None))
        assert panel.selected_path() == "classifier"  # the swap shows the new head
        head_text = panel.detail_labels["head"].text()
        assert f"({was})" in head_text and "Linear (Linear)" not in head_text
        assert panel.detail_labels["type"].text() == f"Linear {width} → {classes}"
    stack.push(SwapHeadCommand(controller, 2, HeadSpec("mlp", (16,), "relu", 0.0, "layernorm"), None))
    panel.select_layer("classifier.1")
    assert panel.detail_labels["type"].text() == "LayerNorm 16"  # not "LayerNorm (16,)"


def _opaque_pixels(icon: QIcon) -> int:
    image = icon.pixmap(16, 16).toImage()
    return sum(image.pixelColor(x, y).alpha() > 0 for x in range(image.width()) for y in range(image.height()))


def test_zoo_ticks_the_models_whose_weights_are_cached(
    qtbot, controller: ModelController, panel: ModelPanel, tmp_path, monkeypatch
) -> None:
    hub_cache = tmp_path / "hf-hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, checkpoints / os.path.basename(torchvision.models.get_model_weights("resnet18").DEFAULT.url))

    panel.populate_zoo()
    qtbot.waitUntil(lambda: panel.zoo_proxy.cached_sources() is not None, timeout=60_000)
    qtbot.waitUntil(lambda: not running_runners(), timeout=10_000)
    proxy = panel.zoo_proxy
    assert proxy.cached_sources() == {"demo", "torchvision:resnet18"}
    assert "2 with cached weights" in panel.zoo_count_label.toolTip()
    assert panel.cached_only_check.text() == "Cached (2)"

    def entry(source: str):
        assert panel.select_source(source)
        return panel.zoo_view.currentIndex()

    ticked, plain = entry("torchvision:resnet18"), entry("torchvision:resnet50")
    assert ticked.data(CACHED_ROLE) is True and plain.data(CACHED_ROLE) is False
    assert _opaque_pixels(ticked.data(Qt.ItemDataRole.DecorationRole)) > 0
    assert _opaque_pixels(plain.data(Qt.ItemDataRole.DecorationRole)) == 0  # a blank: names stay aligned
    assert "on this machine" in ticked.data(Qt.ItemDataRole.ToolTipRole)
    assert "download if missing" in plain.data(Qt.ItemDataRole.ToolTipRole)

    assert panel.cached_only_check.isEnabled()
    panel.cached_only_check.setChecked(True)
    assert [proxy.index(r, 0).data() for r in range(proxy.rowCount())] == ["demo", "torchvision:resnet18"]
    assert panel.selected_source() in ("demo", "torchvision:resnet18")
    panel.search_edit.setText("resnet")
    assert proxy.rowCount() == 1
    assert panel.select_source("timm:resnet50")  # an entry the filters hide: they are cleared
    assert not panel.cached_only_check.isChecked() and proxy.rowCount() > 1000

    # Weights that arrive later (a download) get their tick when the model loads with them.
    state = timm.create_model(TINY, pretrained=False).state_dict()
    repo = hub_cache / f"models--{timm.models.get_pretrained_cfg(TINY).hf_hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.save(state, snapshot / "pytorch_model.bin")
    assert entry(f"timm:{TINY}").data(CACHED_ROLE) is False
    pretrained = load_model(f"timm:{TINY}@pretrained")
    controller.set_model(pretrained, pretrained.find_heads())
    assert entry(f"timm:{TINY}").data(CACHED_ROLE) is True
    assert "3 with cached weights" in panel.zoo_count_label.toolTip()
