"""One writer per run folder: an OS-level lock held for the life of a job that writes it.

The lock is an advisory ``flock`` (``msvcrt.locking`` on Windows) on ``.headswap.lock`` in the
folder, so it vanishes with the process that held it — a killed run never leaves a stale
lock behind. The holder writes its PID into the file so a second writer can be told who
holds the folder. The file itself is never deleted: deleting a lock file while another
process waits on it is how two writers end up holding "the" lock at once.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import RunBusyError, RunFolderError, describe_os_error

LOCK_FILE = ".headswap.lock"
_PID_OFFSET = 16  # Windows locks byte 0; the PID lives after it so a reader can still see it

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class RunLock:
    """An exclusive, non-blocking lock on a run folder (created if missing).

    Raises :class:`RunBusyError` naming the holder's PID when another process — or another
    job in this process — holds it, and :class:`RunFolderError` when the folder cannot be
    written at all (read-only disk, no permission), before any work starts.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunFolderError(f"cannot write to {self.folder}: {describe_os_error(error)}") from error
        if not _try_lock(fd):
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"process {pid}" if pid else "another process"
            raise RunBusyError(
                f"{self.folder} is being written by {holder}; wait until it finishes (or stop it) "
                "before training, resuming or saving into this folder",
                pid,
            )
        self._fd = fd
        try:
            os.lseek(fd, _PID_OFFSET, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.ftruncate(fd, _PID_OFFSET + len(f"{os.getpid()}\n"))
        except OSError:
            pass  # the lock holds without the PID note (e.g. a full disk); only the message is poorer

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the folder back; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                _unlock(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a generator dropped before it ran still frees its folder
        self.release()


def read_holder_pid(folder: str | os.PathLike[str]) -> int | None:
    """The PID the folder's last writer wrote into its lock file (it may have ended since)."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, _PID_OFFSET, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
