"""TryPanel: predictions off the GUI thread with a tiny real model, errors per image, drops,
"not sure" shown as a guess, the list saved as CSV, and heatmaps over the thumbnails."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QLabel, QListView, QSlider
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


@pytest.fixture
def colour_model() -> LoadedModel:
    """Mean colour → class: a pure red image is clearly "red", a grey one a three-way tie."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[10.0, -5, -5], [-5, 10, -5], [-5, -5, 10]]))
        model[2].bias.zero_()
    centred = Preprocessing(input_size=16, resize_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return LoadedModel(model, "colours", "colours", centred, ("red", "green", "blue"))


@pytest.fixture
def red_and_grey(tmp_path) -> list[str]:
    paths = [str(tmp_path / "red.png"), str(tmp_path / "grey.png")]
    Image.new("RGB", (40, 30), (255, 0, 0)).save(paths[0])
    Image.new("RGB", (40, 30), (128, 128, 128)).save(paths[1])
    return paths


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
    for name in ("addImagesButton", "clearImagesButton", "savePredictionsButton", "csvSavedLabel", "topKSpinBox",
                 "predictionList", "heatmapCheckBox", "heatmapClassComboBox", "heatmapOpacitySlider"):
        widget = panel.findChild(object, name)
        assert widget is not None and widget.accessibleName(), name


def _orange_pixels(image, rect) -> int:
    """Pixels of an amber/orange hue (the not-sure colour) inside ``rect`` of ``image``."""
    count = 0
    for y in range(rect.top(), rect.bottom(), 2):
        for x in range(rect.left(), rect.right(), 2):
            colour = QColor(image.pixel(x, y))
            count += 20 <= colour.hue() <= 45 and colour.saturation() > 120
    return count


def test_a_low_top_probability_reads_as_not_sure(qtbot, panel, colour_model, red_and_grey) -> None:
    panel.set_model(colour_model)
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.add_images(red_and_grey)
    _wait_idle(qtbot, panel)
    view = panel.findChild(QListView, "predictionList")
    red, grey = (view.model().index(row) for row in range(2))
    assert not panel.prediction_for(red_and_grey[0]).not_sure() and panel.prediction_for(red_and_grey[1]).not_sure()
    assert "Not sure" not in red.data(Qt.ItemDataRole.AccessibleTextRole)
    assert "Not sure — maybe " in grey.data(Qt.ItemDataRole.AccessibleTextRole)  # what a screen reader says

    panel.show()
    qtbot.waitExposed(panel)
    image = view.viewport().grab().toImage()
    thumb_free = [view.visualRect(index).adjusted(110, 0, 0, 0) for index in (red, grey)]  # text and bars only
    assert _orange_pixels(image, thumb_free[0]) == 0 and _orange_pixels(image, thumb_free[1]) > 10
    accents = {QColor("#1976d2").rgb(), QColor("#64b5f6").rgb()}  # the top bar (light, dark); not-sure bars are grey

    def has_accent(rect) -> bool:
        pixels = ((x, y) for y in range(rect.top(), rect.bottom()) for x in range(rect.left(), rect.right(), 3))
        return any(image.pixel(x, y) in accents for x, y in pixels)

    assert has_accent(thumb_free[0]) and not has_accent(thumb_free[1])


def test_save_as_csv_writes_the_list_and_says_where(qtbot, panel, colour_model, red_and_grey, tmp_path,
                                                   monkeypatch) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    target = tmp_path / "results" / "predictions.csv"
    asked: list[str] = []

    def ask(cls, parent, suggested: str) -> str:  # the user picks ``target`` in the save dialog
        asked.append(suggested)
        return str(target)

    monkeypatch.setattr(TryPanel, "ask_csv_path", classmethod(ask))
    button = panel.findChild(object, "savePredictionsButton")
    assert not button.isEnabled()  # nothing to save yet
    panel.set_model(colour_model)
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.add_images([*red_and_grey, str(broken)])
    _wait_idle(qtbot, panel)
    assert button.isEnabled()

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert asked == [str(tmp_path / "predictions.csv")]  # suggested beside the images
    with open(target, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["image"] for row in rows] == [*red_and_grey, str(broken)]
    assert rows[0]["label"] == "red" and rows[2]["label"] == ""
    assert [row["not_sure"] for row in rows] == ["false", "true", ""] and rows[2]["error"]
    note = panel.findChild(QLabel, "csvSavedLabel")
    assert not note.isHidden() and str(target) in note.text() and "Open folder" in note.text()
    assert f"href='{QUrl.fromLocalFile(str(target.parent)).toString()}'" in note.text()

    monkeypatch.setattr(TryPanel, "ask_csv_path", classmethod(lambda cls, parent, suggested: str(tmp_path)))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # a folder: refused on the page, nothing written
    assert "Could not save the predictions" in note.text() and "is a folder" in note.text()
    panel.clear()
    assert note.isHidden() and not button.isEnabled()


# -- heatmaps -------------------------------------------------------------------------------


@pytest.fixture
def corner_model() -> LoadedModel:
    """Hand-set weights: one filter fires on red, so "red" is wherever the red square is."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]])[:, :, None, None])
        model[0].bias.zero_()
        model[4].weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 4.0]]))
        model[4].bias.zero_()
    centred = Preprocessing(input_size=32, resize_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return LoadedModel(model, "corners", "corners", centred, ("red", "cyan"))


@pytest.fixture
def red_corner(tmp_path) -> list[str]:
    """Grey images with a red square top left (the second one wider than tall)."""
    paths = []
    for i, size in enumerate([(32, 32), (48, 32)]):
        image = Image.new("RGB", size, (128, 128, 128))
        image.paste((255, 0, 0), (0, 0, 12, 12))
        path = tmp_path / f"corner{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def _red_share(image, left: bool) -> float:
    """How red (the heatmap's hot end) the left or right half of a thumbnail is, on average."""
    width, height = image.width(), image.height()
    xs = range(0, width // 2) if left else range(width // 2, width)
    values = [QColor(image.pixel(x, y)) for y in range(0, height, 2) for x in xs]
    return sum(c.red() - c.blue() for c in values) / max(len(values), 1)


def test_heatmap_toggle_draws_the_map_over_each_thumbnail(qtbot, panel, corner_model, red_corner) -> None:
    panel.set_model(corner_model)
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.add_images(red_corner)
    qtbot.waitUntil(lambda: panel.thumbnail_count() == 2, timeout=10000)
    plain = panel.thumbnail_image(red_corner[0])
    assert panel.heatmap_count() == 0 and not panel.findChild(QSlider, "heatmapOpacitySlider").isEnabled()

    with qtbot.waitSignal(panel.heatmapsReady, timeout=10000):
        qtbot.mouseClick(panel.findChild(QCheckBox, "heatmapCheckBox"), Qt.MouseButton.LeftButton)
    assert panel.heatmap_enabled() and panel.heatmap_count() == 2
    assert panel.heatmap_label(red_corner[0]) == panel.prediction_for(red_corner[0]).labels[0] == "red"
    shown = panel.thumbnail_image(red_corner[0])
    assert shown != plain
    assert _red_share(shown, left=True) > _red_share(shown, left=False) + 40  # hot where the square is
    view = panel.findChild(QListView, "predictionList")
    assert "Heatmap: where the model sees red" in view.model().index(0).data(Qt.ItemDataRole.ToolTipRole)

    panel.set_heatmap_opacity(0.0)  # re-blended at once from the kept maps: no new job
    assert not panel.is_busy()
    assert panel.thumbnail_image(red_corner[0]) == plain
    panel.set_heatmap_opacity(0.8)

    combo = panel.findChild(QComboBox, "heatmapClassComboBox")
    assert [combo.itemText(i) for i in range(combo.count())] == ["predicted class", "red", "cyan"]
    with qtbot.waitSignal(panel.heatmapsReady, timeout=10000):
        panel.set_heatmap_class("cyan")  # the grey background speaks for cyan, the square does not
    assert panel.heatmap_label(red_corner[0]) == "cyan"
    shown = panel.thumbnail_image(red_corner[0])
    assert _red_share(shown, left=False) > _red_share(shown, left=True)

    panel.set_heatmap_enabled(False)
    assert panel.thumbnail_image(red_corner[0]) == plain
    _wait_idle(qtbot, panel)


def test_heatmaps_follow_new_images_and_models(qtbot, panel, corner_model, tiny_model, red_corner, images,
                                               tmp_path) -> None:
    panel.set_heatmap_enabled(True)
    assert "Load a model" in panel.findChild(QLabel, "heatmapNoteLabel").text()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    panel.set_model(corner_model)
    with qtbot.waitSignal(panel.heatmapsReady, timeout=10000):
        panel.add_images([*red_corner, str(broken)])  # listed while the toggle is on: explained as they come
    qtbot.waitUntil(lambda: panel.heatmap_count() == 2 and panel.heatmap_error(broken) is not None, timeout=10000)
    assert "not an image" in panel.heatmap_error(broken)

    with qtbot.waitSignal(panel.heatmapsReady, timeout=10000):
        panel.set_model(tiny_model)  # another model: every map is computed again, with its classes
    qtbot.waitUntil(lambda: panel.heatmap_count() == 2, timeout=10000)
    assert panel.heatmap_label(red_corner[0]) in CLASSES
    combo = panel.findChild(QComboBox, "heatmapClassComboBox")
    assert [combo.itemText(i) for i in range(1, combo.count())] == list(CLASSES)
    _wait_idle(qtbot, panel)


def test_a_model_without_a_spatial_layer_says_so(qtbot, panel, red_corner) -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    panel.set_model(LoadedModel(flat, "flat", "flat", Preprocessing(input_size=16, resize_size=16), ("a", "b")))
    with qtbot.waitSignal(panel.predictionsReady, timeout=10000):
        panel.add_images(red_corner)
    with qtbot.waitSignal(panel.heatmapsReady, timeout=10000):
        panel.set_heatmap_enabled(True)
    assert panel.heatmap_count() == 0 and "spatial" in panel.heatmap_problem()
    assert "No heatmaps for this model" in panel.findChild(QLabel, "heatmapNoteLabel").text()
    assert panel.prediction_count() == 2  # predictions are unaffected
    _wait_idle(qtbot, panel)


def test_heatmaps_take_turns_on_the_model_lease(qtbot, panel, corner_model, red_corner) -> None:
    from headswap_gui.gui.jobs import ModelLease

    panel.model_lease = ModelLease()
    panel.set_heatmap_enabled(True)
    panel.set_model(corner_model)
    with qtbot.waitSignal(panel.heatmapsReady, timeout=10000):
        panel.add_images(red_corner)
    _wait_idle(qtbot, panel)
    # One job on the model at a time, predictions first (a traced pass swaps meta tensors into the
    # model for a moment: a prediction running beside it would read them).
    assert panel.model_lease.history() == [("acquired", "predict"), ("released", "predict"),
                                           ("acquired", "explain"), ("released", "explain")]
    assert panel.heatmap_count() == 2 and panel.prediction_count() == 2
