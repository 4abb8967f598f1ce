"""User-facing errors.

Every problem the user can fix (a wrong name, a bad file, a folder without classes) is raised
as :class:`HeadswapError` with a message that says what went wrong, where, and what to do.
The CLI prints the message on one line; the window shows it in a dialog. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence


class HeadswapError(Exception):
    """A problem with the user's input, explained in the message."""


class SourceError(HeadswapError):
    """A model source could not be loaded."""


class HeadError(HeadswapError):
    """No classifier head could be found or replaced."""


class DataError(HeadswapError):
    """An image folder cannot be used for training."""


class FlatImageFolderError(DataError):
    """The folder holds images but no class folders, a common first try.

    ``images`` are their paths (name order), so a front end can offer to classify them with
    the current model instead of training on them.
    """

    def __init__(self, folder: str, images: Sequence[str]) -> None:
        self.folder = folder
        self.images = tuple(images)
        count = len(self.images)
        super().__init__(
            f"{folder} holds {count:,} image{'' if count == 1 else 's'} but no class folders: make one "
            "subfolder per class (e.g. cats/, dogs/) and put each class's images in it."
        )


class InputSizeError(HeadswapError):
    """The model does not run at the image size asked for (and cannot be set to it)."""


class WeightsNotCachedError(SourceError):
    """Pretrained weights are not on this machine and downloading was not allowed."""


class HeadNotFoundError(HeadError):
    """Detection found no classifier head; the user can name the head layer."""


class NeedsArchitectureError(SourceError):
    """A weights file holds tensors only; the caller must say which architecture they fit."""


class NeedsTrustError(SourceError):
    """A file holds pickled Python objects; loading it needs the user's explicit trust."""


class RunFolderError(HeadswapError):
    """A run folder cannot be used as asked (damaged, of another kind, not writable)."""


class RunBusyError(RunFolderError):
    """Another process (or job) is writing the run folder; ``pid`` is the holder's, if known."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class RunExistsError(RunFolderError):
    """The folder already holds a run (or model) that this job would overwrite.

    ``kind`` is ``"training-run"`` or ``"model"``; front ends add how to resume or replace it.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class RunSettingsError(RunFolderError):
    """Resuming with these settings would make the run inconsistent."""


class DistributedError(HeadswapError):
    """A run launched by torchrun cannot go on together: a rank could not join, prepare or
    reach the others."""


def describe_os_error(error: OSError) -> str:
    """A file-system error as words, without Python's ``[Errno N]`` prefix."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the disk is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "the folder does not exist",
        errno.ENOTDIR: "a file stands where a folder is needed",
        errno.EISDIR: "it is a folder",
        errno.EFBIG: "the file is too large for this disk",
    }
    text = error.strerror or str(error) or "an unknown file-system error"
    reason = reasons.get(error.errno or -1) or text[0].lower() + text[1:]  # only the first letter: paths keep their case
    where = f" ({error.filename})" if error.filename else ""
    return f"{reason}{where}"
