"""The workbench state is plain data with change notification: no Qt, checkable on its own."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from torch import nn

from headswap_gui.core.heads import HeadInfo
from headswap_gui.gui.state import Evaluation, WorkbenchState


def _head(path: str) -> HeadInfo:
    return HeadInfo(path=path, type_name="Linear", in_features=4, out_features=3, role="main", found_by="test")


def test_importing_the_state_pulls_in_no_qt():
    code = "import sys, headswap_gui.gui.state; print(any(m.startswith('PySide6') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_listeners_hear_each_changed_field_in_order_and_can_leave():
    state = WorkbenchState()
    heard: list[str] = []
    leave = state.subscribe(heard.append)
    state.update(run_dir="/runs/a", version=3)
    leave()
    state.update(run_dir="/runs/b")
    assert heard == ["run_dir", "version"]
    assert state.run_dir == "/runs/b" and state.version == 3


def test_unknown_fields_are_refused():
    with pytest.raises(AttributeError, match="no field 'dataset_dir'"):
        WorkbenchState().update(dataset_dir="/data")
    with pytest.raises(AttributeError):
        WorkbenchState().update(_listeners=[])


def test_an_evaluation_is_current_only_for_the_version_it_saw():
    state = WorkbenchState(version=4)
    assert not state.evaluation_is_current()
    state.update(evaluation=Evaluation(("a", "b"), ("x.png",), None, model_version=4))
    assert state.evaluation_is_current()
    state.update(version=5)
    assert not state.evaluation_is_current()


def test_a_trained_head_is_known_by_its_module_so_undo_brings_the_answer_back():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    trained = model[1]
    state = WorkbenchState(loaded=SimpleNamespace(model=model), heads=(_head("1"),))
    state.update(trained_head_ids=frozenset({id(trained)}))
    assert state.head_is_trained() and state.num_classes() == 3
    model[1] = nn.Linear(4, 3)  # a swap
    assert not state.head_is_trained()
    model[1] = trained  # undo
    assert state.head_is_trained()
