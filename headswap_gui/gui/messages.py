"""The one place that turns an exception into sentences for the window.

Core raises typed errors whose messages say what went wrong and what to do without naming a
control of the window or a flag of the CLI; the CLI adds its flags (``cli._flag_hint``) and
:func:`explain` adds how to act in the window. Anything else is the machine (a full disk, no
memory left) or a bug. A bug is worded as such: a Python class name or a traceback tells a
user nothing, so those go to the log (the worker logs them) and never into the text.

Branches on types only, never on message wording. Qt-free, and it never imports torch (a torch
error can only exist once torch is imported), so the window can import it at start-up.
"""

from __future__ import annotations

import sys

from headswap_gui.core.errors import (
    HeadNotFoundError,
    HeadswapError,
    NeedsArchitectureError,
    NeedsTrustError,
    WeightsNotCachedError,
    describe_os_error,
)

__all__ = ["INTERNAL_PROBLEM", "USE_AS_HEAD_HINT", "explain"]

USE_AS_HEAD_HINT = "Right-click the layer that produces the class scores → Use as head."

_WINDOW_HINTS: tuple[tuple[type[HeadswapError], str], ...] = (
    (WeightsNotCachedError, "Choose “Pretrained — download if missing” under Weights and load it again."),
    (HeadNotFoundError, USE_AS_HEAD_HINT),
    (NeedsArchitectureError, "Load it again and choose the architecture when headswap asks."),
    (NeedsTrustError, "Load it again and say you trust the file when headswap asks, if you do."),
)
"""How to act on a typed core error in the window; the first matching type wins."""

INTERNAL_PROBLEM = (
    "headswap hit an internal problem and stopped this job; nothing you made was changed. "
    "Run headswap-gui from a terminal to see the details there."
)
"""The text for a bug. There is no log file: the worker logs the traceback to stderr."""

_OUT_OF_MEMORY = "headswap ran out of {memory}. Lower Batch size or Image size on the Train page and try again."


def explain(error: BaseException) -> str:
    """``error`` as one or two sentences a user can act on, with no exception class name."""
    if isinstance(error, HeadswapError) and str(error).strip():
        hint = next((hint for kind, hint in _WINDOW_HINTS if isinstance(error, kind)), "")
        return f"{_sentence(str(error))} {hint}".rstrip()
    if isinstance(error, MemoryError):
        return _OUT_OF_MEMORY.format(memory="memory")
    if _is_gpu_out_of_memory(error):
        return _OUT_OF_MEMORY.format(memory="GPU memory")
    if isinstance(error, OSError):
        return _sentence(f"Could not read or write a file: {describe_os_error(error)}")
    return INTERNAL_PROBLEM


def _is_gpu_out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


_LOWER_CASE_NAMES = frozenset({"headswap", "timm", "torchvision"})
"""Names spelt in lower case even at the start of a sentence."""


def _sentence(text: str) -> str:
    """Core messages are often clauses ("the weights are not cached; …") so that the CLI can
    put them after "headswap: "; in a dialog they start with a capital and end with a stop.
    Only a plain first word is capitalised: a path, a source such as ``timm:vit`` or a name
    such as timm is not."""
    text = text.strip()
    first = text.split(maxsplit=1)[0]
    if first.isalpha() and first.islower() and first not in _LOWER_CASE_NAMES:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
