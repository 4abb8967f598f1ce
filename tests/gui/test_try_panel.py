"""TryPanel: predictions off the GUI thread with a tiny real model, errors per image, drops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from torch import nn

from headswap_gui.core.preprocessing import Preprocessing
from headswap_gui.core.sources import LoadedModel
from headswap_gui.gui.try_panel import TryPanel

CLASSES = ("cat", "dog", "fox")


@pytest.fixture
def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, len(CLASSES))
    )
    return LoadedModel(model, "tiny", "tiny", Preprocessing(input_size=32, resize_size=36), CLASSES)


@pytest.fixture
def images(tmp_path) -> list[str]:
    paths = []
    for i in range(5):
        path = tmp_path / f"photo{i}.png"
        Image.new("RGB", (40, 30), (50 * i, 80, 160)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def panel(qtbot) -> TryPanel:
    widget = TryPanel()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    return widget


def _wait_idle(qtbot, panel: TryPanel) -> None:
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=10000)


def test_predictions_appear(qtbot, panel, tiny_model, images) -> None:
    panel.set_model(tiny_model)
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.add_images(images)
    _wait_idle(qtbot, panel)

    assert panel.prediction_count() == len(images)
    prediction = panel.prediction_for(images[0])
    assert len(prediction.labels) == 3 and set(prediction.labels) <= set(CLASSES)
    assert list(prediction.probabilities) == sorted(prediction.probabilities, reverse=True)
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)  # k == number of classes
    assert panel.thumbnail_count() == len(images)


def test_unreadable_file_gets_its_own_error(qtbot, panel, tiny_model, images, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    panel.set_model(tiny_model)
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.add_images([*images[:2], str(broken)])
    _wait_idle(qtbot, panel)
    assert panel.prediction_count() == 2
    assert panel.error_count() == 1 and panel.error_for(broken)


def test_top_k_and_model_changes_predict_again(qtbot, panel, tiny_model, images) -> None:
    panel.add_images(images[:2])  # no model yet: listed, nothing predicted
    _wait_idle(qtbot, panel)
    assert panel.image_paths() == images[:2] and panel.prediction_count() == 0
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.set_model(tiny_model)
    assert panel.prediction_count() == 2
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.set_top_k(1)
    assert len(panel.prediction_for(images[0]).labels) == 1
    panel.set_model(None)
    assert panel.prediction_count() == 0
    panel.clear()
    assert panel.image_paths() == []
    _wait_idle(qtbot, panel)


def test_dropping_files_and_folders(qtbot, panel, tiny_model, images, tmp_path) -> None:
    panel.set_model(tiny_model)
    mime = QMimeData()
    (tmp_path / "notes.txt").write_text("not an image")
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path))])  # the folder: its images are added
    pos = QPointF(100, 100)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(panel, enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        QApplication.sendEvent(
            panel, QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                              Qt.KeyboardModifier.NoModifier)
        )
    _wait_idle(qtbot, panel)
    assert sorted(panel.image_paths()) == sorted(images)
    assert panel.prediction_count() == len(images)


def test_add_button_uses_the_dialog(qtbot, panel, tiny_model, images, monkeypatch) -> None:
    monkeypatch.setattr(TryPanel, "ask_images", classmethod(lambda cls, parent: images[:1]))
    panel.set_model(tiny_model)
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        qtbot.mouseClick(panel.findChild(object, "addImagesButton"), Qt.MouseButton.LeftButton)
    _wait_idle(qtbot, panel)
    assert panel.prediction_count() == 1
    assert Path(panel.image_paths()[0]) == Path(images[0])


def test_interactive_widgets_are_named(panel) -> None:
    for name in ("addImagesButton", "clearImagesButton", "topKSpinBox", "predictionList"):
        widget = panel.findChild(object, name)
        assert widget is not None and widget.accessibleName(), name
