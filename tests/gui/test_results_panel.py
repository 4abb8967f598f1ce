"""ResultsPanel: confusion matrix, per-class metrics, cell selection, misclassified gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from headswap_gui.core.training import EvalResult
from headswap_gui.gui.results_panel import ResultsPanel

NAMES = ("cat", "dog", "fox")
#           0  1  2  3  4  5  6  7
TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
PRED = [0, 1, 0, 1, 2, 2, 0, 2]
LOSS = [0.1, 2.5, 0.2, 0.3, 0.9, 0.05, 1.7, 0.4]


@pytest.fixture
def images(tmp_path) -> list[str]:
    paths = []
    for i in range(len(TRUE)):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (12, 10), (30 * i, 100, 200)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def panel(qtbot) -> ResultsPanel:
    widget = ResultsPanel()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    return widget


def _settle(qtbot, panel: ResultsPanel) -> None:
    qtbot.waitUntil(lambda: not panel.thumbnails_loading(), timeout=5000)


def _probabilities(pred: list[int], confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(pred), len(NAMES)), (1 - confidence) / (len(NAMES) - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_confusion_matrix_and_metrics(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    _settle(qtbot, panel)

    expected = np.array([[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    np.testing.assert_array_equal(panel.confusion_matrix(), expected)
    assert panel.accuracy() == pytest.approx(5 / 8)
    rows = {name: (p, r, f1, n) for name, p, r, f1, n in panel.class_metrics()}
    assert rows["cat"][1] == pytest.approx(2 / 3)  # recall
    assert rows["cat"][0] == pytest.approx(2 / 3)  # precision: 2 of the 3 predicted cats
    assert rows["dog"][3] == 2
    table = panel.findChild(object, "classMetricsTable")
    assert table.model().rowCount() == 3
    assert "62.5%" in panel.findChild(object, "resultsSummaryLabel").text()


def test_selecting_a_cell_lists_its_images(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    with qtbot.waitSignal(panel.cellSelected) as blocker:
        panel.select_cell(2, 0)  # fox predicted as cat
    assert blocker.args == [2, 0]
    assert panel.selected_cell_images() == [images[6]]
    panel.select_cell(0, 0)
    assert panel.selected_cell_images() == [images[0], images[2]]
    assert panel.findChild(object, "cellImagesList").count() == 2
    _settle(qtbot, panel)


def test_clicking_a_cell_selects_it(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.findChild(object, "confusionMatrixView")
    with qtbot.waitSignal(panel.cellSelected):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.cell_center(1, 2))
    assert panel.selected_cell() == (1, 2)
    assert panel.selected_cell_images() == [images[4]]
    # Keyboard: move left and press Enter -> (1, 1).
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Left)
    with qtbot.waitSignal(panel.cellSelected):
        qtbot.keyClick(view, Qt.Key.Key_Return)
    assert panel.selected_cell() == (1, 1)
    _settle(qtbot, panel)


def test_misclassified_gallery_is_sorted_by_loss(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    assert panel.misclassified_count() == 3
    # Wrong ones: 1 (loss 2.5), 4 (0.9), 6 (1.7).
    assert panel.misclassified_images() == [images[1], images[6], images[4]]
    gallery = panel.findChild(object, "misclassifiedGallery")
    assert gallery.count() == 3
    assert "cat" in gallery.item(0).text() and "80%" in gallery.item(0).text()
    _settle(qtbot, panel)


def test_eval_result_and_derived_values(qtbot, panel, images) -> None:
    probs = _probabilities(PRED, 0.7).astype(np.float32)
    losses = -np.log(probs[np.arange(len(TRUE)), TRUE])
    result = EvalResult(
        np.array(TRUE, np.int64), np.array(PRED, np.int64), probs, losses.astype(np.float32)
    )
    panel.set_eval_result(result, NAMES, [Path(p) for p in images])
    np.testing.assert_array_equal(panel.confusion_matrix(), result.confusion())
    assert panel.misclassified_images() == [images[i] for i in result.misclassified()]
    # Without labels or losses they follow from the probabilities.
    panel.set_results(NAMES, images, TRUE, None, probs)
    np.testing.assert_array_equal(panel.confusion_matrix(), result.confusion())
    assert panel.misclassified_count() == 3
    _settle(qtbot, panel)


def test_clear(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    panel.select_cell(0, 1)
    panel.clear()
    assert panel.confusion_matrix().shape == (0, 0)
    assert panel.misclassified_count() == 0
    assert panel.selected_cell_images() == []
    assert not panel.has_results()
    _settle(qtbot, panel)


def test_interactive_widgets_are_named(panel) -> None:
    for name in ("classMetricsTable", "confusionMatrixView", "cellImagesList", "misclassifiedGallery",
                 "resultsImageTabs"):
        widget = panel.findChild(object, name)
        assert widget is not None and widget.accessibleName(), name


def test_activating_a_misclassified_image_selects_its_cell(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    gallery = panel.findChild(object, "misclassifiedGallery")
    with qtbot.waitSignal(panel.cellSelected) as blocker:
        gallery.itemActivated.emit(gallery.item(1))  # image 6: fox predicted as cat
    assert blocker.args == [2, 0]
    assert panel.selected_cell_images() == [images[6]]
    _settle(qtbot, panel)


def test_a_perfect_result_says_so_instead_of_an_empty_gallery(qtbot, panel, images) -> None:
    from PySide6.QtWidgets import QLabel

    panel.set_results(NAMES, images, TRUE, TRUE, _probabilities(TRUE), LOSS)
    assert panel.misclassified_count() == 0
    label = panel.findChild(QLabel, "allCorrectLabel")
    assert label.isVisibleTo(panel) and "classified correctly" in label.text()
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    assert not label.isVisibleTo(panel)


def test_activating_an_image_of_a_cell_asks_to_look_at_it(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    panel.show()
    qtbot.waitExposed(panel)
    panel.select_cell(2, 0)
    cell_list = panel.findChild(object, "cellImagesList")
    qtbot.waitUntil(cell_list.isVisible, timeout=5000)
    cell_list.setCurrentRow(0)
    with qtbot.waitSignal(panel.imageActivated) as blocker:
        qtbot.keyClick(cell_list, Qt.Key.Key_Return)  # Enter, as a double-click, activates the item
    assert blocker.args == [images[6]]
    _settle(qtbot, panel)
