"""LayerTreeModel and LayerFilterProxyModel over hand-built LayerRecord trees."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QFont, QGuiApplication, QIcon, QPalette

from headswap_gui.core.module_tree import LayerRecord
from headswap_gui.gui.layer_tree_model import (
    PATH_ROLE,
    RECORD_ROLE,
    TRAINABLE_COLUMN,
    LayerFilterProxyModel,
    LayerTreeModel,
)


def leaf(
    path: str, type_name: str, params: int = 0, trainable: int | None = None, **kw
) -> LayerRecord:
    return LayerRecord(
        path=path,
        name=path.rsplit(".", 1)[-1],
        type_name=type_name,
        own_params=params,
        total_params=params,
        trainable_params=params if trainable is None else trainable,
        output_shape=kw.pop("output_shape", (1, 8)),
        **kw,
    )


def group(path: str, type_name: str, children: tuple[LayerRecord, ...], **kw) -> LayerRecord:
    total = sum(c.total_params for c in children)
    trainable = sum(c.trainable_params for c in children)
    return LayerRecord(
        path=path,
        name=path.rsplit(".", 1)[-1] if path else "",
        type_name=type_name,
        own_params=0,
        total_params=total,
        trainable_params=trainable,
        output_shape=kw.pop("output_shape", (1, 8)),
        children=children,
        **kw,
    )


def build_tiny_net(fc1_trainable: int | None = None) -> LayerRecord:
    """A GoogLeNet-like shape: a frozen backbone, an auxiliary head and the main head;
    ``fc1_trainable`` freezes (part of) the auxiliary branch's first layer."""
    backbone = group(
        "features",
        "Sequential",
        (
            leaf("features.0", "Conv2d", 1_728, 0, output_shape=(1, 64, 112, 112)),
            leaf("features.1", "BatchNorm2d", 128, 0),
            leaf("features.2", "ReLU"),
        ),
    )
    aux = group(
        "aux1",
        "InceptionAux",
        (
            leaf("aux1.fc1", "Linear", 1_000, fc1_trainable, inside_head=False),
            leaf("aux1.fc2", "Linear", 10_250, head_role="auxiliary",
                 head_found_by="known path for torchvision GoogLeNet"),
        ),
    )
    fc = leaf("fc", "Linear", 1_234_567, head_role="main", head_found_by="timm get_classifier()",
              output_shape=(1, 1000))
    return group("", "TinyNet", (backbone, aux, fc), output_shape=(1, 1000))


@pytest.fixture
def tiny_net() -> LayerRecord:
    return build_tiny_net()


@pytest.fixture
def model(tiny_net: LayerRecord) -> LayerTreeModel:
    return LayerTreeModel(tiny_net)


def test_modeltester(qtmodeltester, model: LayerTreeModel) -> None:
    qtmodeltester.check(model)


def test_modeltester_through_reset_and_filter(qtmodeltester, tiny_net: LayerRecord) -> None:
    model = LayerTreeModel()
    qtmodeltester.check(model)
    proxy = LayerFilterProxyModel()
    proxy.setSourceModel(model)
    model.set_root(tiny_net)
    proxy.set_filter_text("relu")
    qtmodeltester.check(proxy)
    model.set_root(None)
    assert model.rowCount() == 0


def test_root_is_single_top_row_named_by_type(model: LayerTreeModel) -> None:
    assert model.rowCount() == 1
    root = model.index(0, 0)
    assert root.data() == "TinyNet"
    assert model.rowCount(root) == 3
    assert model.index(0, 1).data() == "TinyNet"
    assert root.data(PATH_ROLE) == ""
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(5)] == [
        "Name", "Type", "Output shape", "Parameters", "Trainable",
    ]


def test_head_row_is_bold_tinted_with_icon_and_tooltip(model: LayerTreeModel) -> None:
    index = model.index_for_path("fc")
    assert index.isValid()
    font = index.data(Qt.ItemDataRole.FontRole)
    assert isinstance(font, QFont) and font.bold()
    assert isinstance(index.data(Qt.ItemDataRole.BackgroundRole), QBrush)
    assert isinstance(index.data(Qt.ItemDataRole.DecorationRole), QIcon)
    tooltip = index.data(Qt.ItemDataRole.ToolTipRole)
    assert "Classifier head (main)" in tooltip
    assert "found by: timm get_classifier()" in tooltip
    # Non-head rows stay plain.
    plain = model.index_for_path("features.2")
    assert plain.data(Qt.ItemDataRole.FontRole) is None
    assert plain.data(Qt.ItemDataRole.DecorationRole) is None


def test_auxiliary_head_is_flagged_with_its_role(model: LayerTreeModel) -> None:
    index = model.index_for_path("aux1.fc2")
    assert index.data() == "aux1.fc2 (aux head)"  # its whole path: "fc2" alone does not say which branch
    assert model.index_for_path("fc").data() == "fc"
    assert "Classifier head (auxiliary)" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert [i.data(PATH_ROLE) for i in model.head_indexes()] == ["aux1.fc2", "fc"]


def test_frozen_rows_are_greyed(model: LayerTreeModel) -> None:
    palette = QGuiApplication.palette()
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    frozen = model.index_for_path("features.0")
    brush = frozen.data(Qt.ItemDataRole.ForegroundRole)
    assert isinstance(brush, QBrush) and brush.color() == disabled
    assert "frozen" in frozen.data(Qt.ItemDataRole.ToolTipRole)
    assert model.index_for_path("features").data(Qt.ItemDataRole.ForegroundRole) is not None
    # Trainable layers and parameter-free layers are not greyed.
    assert model.index_for_path("fc").data(Qt.ItemDataRole.ForegroundRole) is None
    assert model.index_for_path("features.2").data(Qt.ItemDataRole.ForegroundRole) is None


def test_numbers_are_formatted_and_right_aligned(model: LayerTreeModel) -> None:
    fc = model.index_for_path("fc")
    params = fc.siblingAtColumn(3)
    assert params.data() == "1,234,567"
    assert fc.siblingAtColumn(4).data() == "1,234,567"
    assert fc.siblingAtColumn(2).data() == "1 × 1000"
    alignment = Qt.AlignmentFlag(params.data(Qt.ItemDataRole.TextAlignmentRole))
    assert alignment & Qt.AlignmentFlag.AlignRight
    assert model.index_for_path("features.0").siblingAtColumn(4).data() == "0"


def test_index_for_path_and_record_role(model: LayerTreeModel, tiny_net: LayerRecord) -> None:
    index = model.index_for_path("aux1.fc1")
    assert index.isValid()
    assert index.data(RECORD_ROLE) is tiny_net.find("aux1.fc1")
    assert index.data(PATH_ROLE) == "aux1.fc1"
    parent = index.parent()
    assert parent.data(PATH_ROLE) == "aux1"
    assert parent.parent() == model.index(0, 0)
    assert model.index_for_path("") == model.index(0, 0)
    assert not model.index_for_path("does.not.exist").isValid()


def test_filter_keeps_ancestors_of_matches(model: LayerTreeModel) -> None:
    proxy = LayerFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.set_filter_text("BATCHNORM")  # type, any case
    root = proxy.index(0, 0)
    assert root.data() == "TinyNet"
    assert proxy.rowCount(root) == 1
    features = proxy.index(0, 0, root)
    assert features.data(PATH_ROLE) == "features"
    children = [proxy.index(r, 0, features) for r in range(proxy.rowCount(features))]
    assert [child.data(PATH_ROLE) for child in children] == ["features.1"]

    proxy.set_filter_text("aux1.fc")  # path substring
    aux = proxy.index(0, 0, proxy.index(0, 0))
    assert aux.data(PATH_ROLE) == "aux1"
    assert proxy.rowCount(aux) == 2

    proxy.set_filter_text("head")  # role
    assert sorted(_visible_paths(proxy)) == ["", "aux1", "aux1.fc2", "fc"]
    proxy.set_filter_text("aux head")  # as the row reads
    assert sorted(_visible_paths(proxy)) == ["", "aux1", "aux1.fc2"]

    proxy.set_filter_text("no such layer")
    assert proxy.rowCount() == 0
    proxy.set_filter_text("")
    assert proxy.rowCount(proxy.index(0, 0)) == 3


def _visible_paths(proxy: LayerFilterProxyModel, parent: QModelIndex = QModelIndex()) -> list[str]:
    paths = []
    for row in range(proxy.rowCount(parent)):
        index = proxy.index(row, 0, parent)
        paths.append(index.data(PATH_ROLE))
        paths.extend(_visible_paths(proxy, index))
    return paths


def test_large_tree_indexes_directly() -> None:
    blocks = tuple(
        group(
            f"blocks.{b}", "Block", tuple(leaf(f"blocks.{b}.{i}", "Linear", 10) for i in range(20))
        )
        for b in range(100)
    )
    root = group("", "BigNet", (group("blocks", "ModuleList", blocks),))
    model = LayerTreeModel(root)
    assert sum(1 for _ in root.walk()) > 2000
    last = model.index_for_path("blocks.99.19")
    assert last.isValid() and last.row() == 19
    assert last.parent().parent().data(PATH_ROLE) == "blocks"


# -- updating in place (a run froze layers) ------------------------------------------------------


def _record_signals(model: LayerTreeModel) -> list[tuple[str, ...]]:
    seen: list[tuple[str, ...]] = []
    model.modelReset.connect(lambda: seen.append(("reset",)))
    model.dataChanged.connect(
        lambda top, bottom, _roles: seen.append(
            ("changed", top.data(PATH_ROLE), bottom.siblingAtColumn(0).data(PATH_ROLE), str(bottom.column()))
        )
    )
    return seen


def test_update_in_place_redraws_only_the_changed_rows(qtmodeltester, model: LayerTreeModel) -> None:
    kept = QPersistentModelIndex(model.index_for_path("aux1.fc2"))
    seen = _record_signals(model)
    assert model.update_records(build_tiny_net(fc1_trainable=0))
    # fc1 itself, its branch (aux1) and the root changed their trainable counts; nothing else.
    assert sorted(seen) == [("changed", "", "", "4"), ("changed", "aux1", "aux1", "4"),
                            ("changed", "aux1.fc1", "aux1.fc1", "4")]
    fc1 = model.index_for_path("aux1.fc1")
    assert fc1.siblingAtColumn(TRAINABLE_COLUMN).data() == "0"
    assert fc1.data(Qt.ItemDataRole.ForegroundRole) is not None  # greyed: frozen now
    assert model.root_record().find("aux1").trainable_params == 10_250
    assert kept.isValid() and kept.data(PATH_ROLE) == "aux1.fc2"  # no reset: indexes live on
    assert [i.data(PATH_ROLE) for i in model.head_indexes()] == ["aux1.fc2", "fc"]
    qtmodeltester.check(model)


def test_update_in_place_with_nothing_changed_emits_nothing(model: LayerTreeModel) -> None:
    seen = _record_signals(model)
    assert model.update_records(build_tiny_net())
    assert seen == []


def test_update_in_place_refuses_other_modules(model: LayerTreeModel, tiny_net: LayerRecord) -> None:
    seen = _record_signals(model)
    other = group("", "TinyNet", tiny_net.children[:2])  # the main head is gone
    assert not model.update_records(other)
    assert seen == [] and model.root_record() is tiny_net
    assert not LayerTreeModel().update_records(tiny_net)  # nothing shown yet: set_root is for that
