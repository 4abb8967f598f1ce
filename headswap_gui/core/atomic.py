"""Atomic file writes: a temp file in the same folder, flushed, then renamed over the target.

Killing the process mid-save must never corrupt the last good checkpoint, so nothing is ever
written in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` and move the result onto ``path`` only if it succeeded."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        write(temp)
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide a user's own run from their other accounts
        os.replace(temp, target)
        _sync_folder(target.parent)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def save_user_file(path: str | os.PathLike[str], write: Callable[[str], None], example: str) -> None:
    """:func:`write_atomically` for a file the user named: a folder, or a write that fails,
    raises :class:`HeadswapError` naming the file (never the hidden temp file) and the reason;
    ``example`` is the file name suggested inside a folder."""
    from .data import printable_path
    from .errors import HeadswapError, describe_os_error

    target = os.fspath(path)
    refuse_folder(target, example)
    try:
        write_atomically(target, write)
    except OSError as error:
        temp = os.path.basename(error.filename or "").startswith(f".{os.path.basename(target)}.")
        shown = OSError(error.errno, error.strerror) if temp else error
        raise HeadswapError(f"cannot write {printable_path(target)}: {describe_os_error(shown)}") from error


def refuse_folder(path: str | os.PathLike[str], example: str) -> None:
    """Raise :class:`HeadswapError` when the file the user named is a folder (checked before
    long work, too, so that it is not lost at the end)."""
    from .data import printable_path
    from .errors import HeadswapError

    if os.path.isdir(path):
        raise HeadswapError(f"{printable_path(os.fspath(path))} is a folder; give a file name, e.g. "
                            f"{printable_path(os.path.join(path, example))}")


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8") as stream:
            stream.write(text)

    write_atomically(path, write)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a power cut must not undo a commit."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)
