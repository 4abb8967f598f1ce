"""Which window actions are available, as a pure function of the workbench's state.

Kept apart from the widgets so the whole rule is one table a test can read: the window builds
a :class:`WorkbenchFacts` from its state and applies the :class:`ActionStates` it gets back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkbenchFacts:
    """What the availability of actions depends on."""

    has_model: bool = False
    has_heads: bool = False
    has_data: bool = False
    loading: bool = False
    training: bool = False
    model_busy: bool = False  # a job holds the model: training, evaluating, exporting
    can_undo: bool = False
    can_redo: bool = False
    has_run: bool = False  # a run folder to save a copy of


@dataclass(frozen=True)
class ActionStates:
    open_model: bool
    replace_head: bool
    undo: bool
    redo: bool
    show_head: bool
    start_training: bool
    stop_training: bool
    save_run: bool
    export: bool
    run_on_cluster: bool  # write the run as a cluster job: it reads the model's source, not its weights


def action_states(f: WorkbenchFacts) -> ActionStates:
    """Edits wait for every job that uses the model; Start needs a model, its head and data."""
    edit_ok = f.has_model and not f.model_busy and not f.loading
    return ActionStates(
        open_model=not f.model_busy,
        replace_head=edit_ok and f.has_heads,
        undo=edit_ok and f.can_undo,
        redo=edit_ok and f.can_redo,
        show_head=f.has_heads,
        start_training=edit_ok and f.has_data,
        stop_training=f.training,
        save_run=f.has_run and not f.training,
        export=f.has_model and not f.model_busy,
        run_on_cluster=f.has_model and f.has_data and not f.loading,
    )
