"""The workbench's state, in one plain object: what is loaded, which version of it, on what data,
in which run, and what the last evaluation said about which version.

No Qt here (and no torch import): the state is data plus change notification, so it can be
built and checked in a test without a window. The window's controllers change it; views and
the action table read it. ``ModelController`` is the one writer of the model fields and turns
their changes into Qt signals for the widgets; the window writes the dataset, run and
evaluation fields as jobs report back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headswap_gui.core.data import DatasetInfo
    from headswap_gui.core.heads import HeadInfo
    from headswap_gui.core.module_tree import LayerRecord
    from headswap_gui.core.sources import LoadedModel

__all__ = ["Evaluation", "WorkbenchState"]

Listener = Callable[[str], None]  # called with the name of the field that changed


@dataclass(frozen=True)
class Evaluation:
    """Validation results of one model version (what the Results page shows)."""

    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    result: Any  # training.EvalResult
    model_version: int  # the WorkbenchState.version the evaluation saw


@dataclass
class WorkbenchState:
    """The one source of truth of the window; every field change is announced to listeners."""

    loaded: LoadedModel | None = None
    heads: tuple[HeadInfo, ...] = ()
    output_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tree: LayerRecord | None = None
    version: int = 0  # moves with every kept change of weights or heads
    trained_head_ids: frozenset[int] = frozenset()  # id() of head modules that hold trained weights
    new_head_ids: frozenset[int] = frozenset()  # id() of head modules built here and never trained
    dataset: DatasetInfo | None = None
    run_dir: str | None = None  # the run the window shows (Save run as… copies it)
    evaluation: Evaluation | None = None
    _listeners: list[Listener] = field(default_factory=list, repr=False, compare=False)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(field_name)`` after each change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def update(self, **changes: Any) -> None:
        """Set fields and tell the listeners, in the order given (unknown names are an error)."""
        for name, value in changes.items():
            if name.startswith("_") or name not in self.__dataclass_fields__:
                raise AttributeError(f"WorkbenchState has no field {name!r}")
            setattr(self, name, value)
        for name in changes:
            for listener in list(self._listeners):
                listener(name)

    # -- derived facts ------------------------------------------------------------------------

    def main_head(self) -> HeadInfo | None:
        return next((h for h in self.heads if h.role == "main"), self.heads[0] if self.heads else None)

    def num_classes(self) -> int | None:
        head = self.main_head()
        return head.out_features if head is not None else None

    def head_modules(self) -> list[Any]:
        if self.loaded is None:
            return []
        modules = dict(self.loaded.model.named_modules())
        return [modules[h.path] for h in self.heads if h.path in modules]  # a head not attached yet has none

    def head_is_trained(self) -> bool:
        """Whether a current head module is one that was trained. By module identity, not by
        the last action: undo brings a trained module back, and with it this answer."""
        return any(id(module) in self.trained_head_ids for module in self.head_modules())

    def head_is_new(self) -> bool:
        """Whether a current head module was built here from random weights and has not been
        trained since: its predictions mean nothing yet, and the pages say so."""
        return any(id(module) in self.new_head_ids for module in self.head_modules())

    def evaluation_is_current(self) -> bool:
        """Whether the last evaluation describes the model as it is now."""
        return self.evaluation is not None and self.evaluation.model_version == self.version
