"""The availability of every action, as a table over the workbench's state."""

from __future__ import annotations

import pytest

from headswap_gui.gui.actions import ActionStates, WorkbenchFacts, action_states

READY = dict(has_model=True, has_heads=True, has_data=True)
COLUMNS = ("open_model", "replace_head", "undo", "redo", "show_head", "start_training", "stop_training",
           "save_run", "export")

TABLE = [
    # facts                                                              open head undo redo show start stop save export
    (WorkbenchFacts(),                                                      (1,   0,   0,   0,   0,   0,    0,   0,   0)),
    (WorkbenchFacts(loading=True),                                          (1,   0,   0,   0,   0,   0,    0,   0,   0)),
    (WorkbenchFacts(has_model=True),                                        (1,   0,   0,   0,   0,   0,    0,   0,   1)),
    (WorkbenchFacts(**READY),                                               (1,   1,   0,   0,   1,   1,    0,   0,   1)),
    (WorkbenchFacts(**READY, can_undo=True, can_redo=True),                 (1,   1,   1,   1,   1,   1,    0,   0,   1)),
    (WorkbenchFacts(**READY, loading=True, can_undo=True),                  (1,   0,   0,   0,   1,   0,    0,   0,   1)),
    (WorkbenchFacts(**READY, training=True, model_busy=True, has_run=True,
                    can_undo=True),                                          (0,   0,   0,   0,   1,   0,    1,   0,   0)),
    (WorkbenchFacts(**READY, model_busy=True, has_run=True),                (0,   0,   0,   0,   1,   0,    0,   1,   0)),
    (WorkbenchFacts(**READY, has_run=True),                                 (1,   1,   0,   0,   1,   1,    0,   1,   1)),
    (WorkbenchFacts(has_model=True, has_heads=False, has_data=True),        (1,   0,   0,   0,   0,   1,    0,   0,   1)),
]


@pytest.mark.parametrize("facts, expected", TABLE)
def test_action_states(facts: WorkbenchFacts, expected: tuple[int, ...]) -> None:
    states = action_states(facts)
    assert isinstance(states, ActionStates)
    assert tuple(int(getattr(states, name)) for name in COLUMNS) == expected
