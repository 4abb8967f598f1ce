"""Layer-tree data for inspection: one immutable record per module.

Built from the module hierarchy and one dummy forward (on the ``meta`` device when only the
structure is needed), never by parsing ``str(model)``. The window's tree view and
``headswap inspect`` are both views over these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

HeadRole = str  # "main" | "auxiliary" | "distillation"


@dataclass(frozen=True)
class LayerRecord:
    """One module of the model, with its children."""

    path: str  # dotted path from the root ("" for the root itself)
    name: str  # last path component ("" for the root)
    type_name: str  # class name, e.g. "Linear"
    own_params: int  # parameters held directly by this module
    total_params: int  # own + all descendants
    trainable_params: int  # of total_params, those with requires_grad
    output_shape: tuple[int, ...] | None  # from the dummy forward; None when it did not run
    head_role: HeadRole | None = None  # set on detected heads
    head_found_by: str | None = None  # how the head was found, for tooltips
    inside_head: bool = False  # a descendant of a head
    children: tuple[LayerRecord, ...] = field(default=())

    def walk(self) -> Iterator[LayerRecord]:
        """This record and every descendant, depth first in module order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> LayerRecord | None:
        for record in self.walk():
            if record.path == path:
                return record
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``layers`` entry of ``headswap inspect --json``."""
        return {
            "path": self.path,
            "type": self.type_name,
            "params": self.total_params,
            "trainable": self.trainable_params,
            "output_shape": list(self.output_shape) if self.output_shape is not None else None,
            "head": self.head_role,
            "children": [child.to_dict() for child in self.children],
        }
