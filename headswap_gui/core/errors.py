"""User-facing errors.

Every problem the user can fix (a wrong name, a bad file, a folder without classes) is raised
as :class:`HeadswapError` with a message that says what went wrong, where, and what to do.
The CLI prints the message on one line; the window shows it in a dialog. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class HeadswapError(Exception):
    """A problem with the user's input, explained in the message."""


class SourceError(HeadswapError):
    """A model source could not be loaded."""


class HeadError(HeadswapError):
    """No classifier head could be found or replaced."""


class DataError(HeadswapError):
    """An image folder cannot be used for training."""
