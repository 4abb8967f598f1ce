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
