"""messages.explain: every error the window can meet becomes sentences, never Python's words."""

from __future__ import annotations

import builtins
import errno
import importlib
import inspect
import os
import pkgutil
import re

import pytest
import torch

import headswap_gui.core
from headswap_gui.core.errors import HeadNotFoundError, HeadswapError, WeightsNotCachedError
from headswap_gui.gui.messages import INTERNAL_PROBLEM, USE_AS_HEAD_HINT, explain

for _module in pkgutil.iter_modules(headswap_gui.core.__path__, "headswap_gui.core."):
    importlib.import_module(_module.name)  # so that every core error class is a known subclass


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _subclasses(direct))]


HEADSWAP_ERRORS = sorted(set(_subclasses(HeadswapError)), key=lambda cls: cls.__name__)
CLASS_NAMES = {
    *(name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)),
    *(cls.__name__ for cls in HEADSWAP_ERRORS),
    "OutOfMemoryError",
}
_ARGUMENTS = {
    "message": "the weights of timm:vit_tiny are not in the cache; download them",
    "pid": 4242,
    "kind": "training-run",
    "folder": "/home/ann/Pictures/pets",
    "images": ["/home/ann/Pictures/pets/a.png", "/home/ann/Pictures/pets/b.png"],
    "problems": ["cat/001.png no longer exists", "a target dog/001.png already exists"],
}


def make(cls: type[HeadswapError]) -> HeadswapError:
    """An instance built from its constructor's parameter names (a new one fails here, by name)."""
    if cls.__init__ is Exception.__init__:
        return cls(_ARGUMENTS["message"])
    parameters = list(inspect.signature(cls.__init__).parameters)[1:]  # after self
    return cls(*(_ARGUMENTS[name] for name in parameters))


OTHER_ERRORS = [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/home/ann/runs/pets"),
    OSError(),
    MemoryError(),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    AssertionError(),
    RuntimeError("CUDA error: device-side assert triggered"),
    KeyError("x"),
    ValueError("pop from empty list"),
    HeadswapError(""),  # a user error without words is a bug too
]


@pytest.mark.parametrize(
    "error",
    [make(cls) for cls in HEADSWAP_ERRORS] + OTHER_ERRORS,
    ids=lambda error: type(error).__name__,
)
def test_every_error_reads_as_sentences(error: BaseException) -> None:
    text = explain(error)
    assert text.strip() and text.rstrip()[-1] in ".!?"
    assert text[0].isupper() or text.startswith(("headswap", "/"))  # a name or a path keeps its case
    leaked = sorted(name for name in CLASS_NAMES if re.search(rf"\b{name}\b", text))
    assert not leaked, text
    assert "Traceback" not in text


def test_user_errors_keep_their_words_and_get_the_window_hint() -> None:
    assert explain(WeightsNotCachedError("the weights are not cached; download them")) == (
        "The weights are not cached; download them. "
        "Choose “Pretrained — download if missing” under Weights and load it again."
    )
    text = explain(HeadNotFoundError("no classifier head found in the trunk"))
    assert text.startswith("No classifier head found in the trunk. ") and text.count(USE_AS_HEAD_HINT) == 1
    # A path or a source keeps its case; a finished sentence keeps its stop.
    assert explain(HeadswapError("timm:vit is unknown.")) == "timm:vit is unknown."
    assert explain(HeadswapError("timm has no architecture 'x'")) == "timm has no architecture 'x'."


def test_machine_problems_say_what_to_change() -> None:
    assert explain(OSError(errno.ENOSPC, "No space left on device", "/runs/Pets")) == (
        "Could not read or write a file: the disk is full (/runs/Pets)."
    )
    assert explain(OSError("Cannot open /Users/Ann/x.png")) == "Could not read or write a file: cannot open /Users/Ann/x.png."
    assert "GPU memory" in explain(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert "batch size" in explain(MemoryError()).lower()


def test_bugs_are_one_plain_sentence_pointing_at_the_terminal() -> None:
    assert explain(RuntimeError("CUDA error: device-side assert triggered")) == INTERNAL_PROBLEM
    assert "terminal" in INTERNAL_PROBLEM and "CUDA" not in INTERNAL_PROBLEM
