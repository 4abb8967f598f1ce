"""Pending changes to an image folder's labels, applied safely and undone exactly.

Fixing a bad label is a file operation: the image moves to the right class folder, is left
out of training (listed in the folder's :data:`~headswap_gui.core.data.EXCLUDE_FILE`, which
:func:`~headswap_gui.core.data.scan_image_folder` honours), or goes to the trash. A
:class:`LabelEditPlan` collects such edits as immutable records and touches nothing;
:func:`apply_plan` carries them out:

* **Checked first.** Every source must still exist, no move may land on an existing file
  (or on another move's target), and the folders must be writable — all checked before the
  first change; any problem raises :class:`LabelEditError` with nothing touched.
* **Never overwrite, never delete.** A move is a hard link plus unlink where the file system
  has hard links (the link fails if the target appeared meanwhile), else a move after the
  check. "Trash" is the desktop trash (freedesktop.org on Linux, the Recycle Bin, the macOS
  Trash) through ``send2trash``; nothing is ever removed for good.
* **Reported exactly.** A failure part-way stops there; the :class:`LabelEditReport` lists
  what was done, which edit failed and why, and what was not attempted.
* **Undoable.** :func:`revert_edits` puts back what a report says was done: moves move back,
  exclusions added by the plan leave the list. A trashed file cannot be taken back from the
  trash by headswap (``send2trash`` does not say where the file went, and each desktop keeps
  its trash differently): the report says so, and :attr:`LabelEditPlan.irreversible` lets a
  front end say it before anything is applied.

Order of work: exclusions first (one atomic write of the list), then moves, then the trash,
so an error never leaves an irreversible step done before a reversible one.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from send2trash import send2trash

from .atomic import write_text_atomically
from .data import _TRAIN_DIR, _VAL_DIR, EXCLUDE_FILE, DatasetInfo, _relative, printable_path, read_excluded
from .errors import DataError, HeadswapError

__all__ = [
    "EDIT_ACTIONS",
    "AppliedEdit",
    "LabelEdit",
    "LabelEditError",
    "LabelEditPlan",
    "LabelEditReport",
    "apply_plan",
    "check_plan",
    "revert_edits",
]

EditAction = Literal["move", "exclude", "trash"]
EDIT_ACTIONS: tuple[EditAction, ...] = ("move", "exclude", "trash")
_NO_HARD_LINKS = (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)
_EXCLUDE_HEADER = (
    "# Images headswap leaves out of training: one path per line, relative to this folder.\n"
    "# Delete a line (or this file) to train on the image again.\n"
)


class LabelEditError(HeadswapError):
    """A plan that cannot be applied (or undone) as it is; nothing was changed. ``problems``
    holds one sentence per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("nothing was changed: " + "; ".join(self.problems))


@dataclass(frozen=True)
class LabelEdit:
    """One pending change: ``path`` (absolute, as the folder scan found it) moves to the
    class folder ``target_class``, is excluded from training, or goes to the trash."""

    path: str
    action: EditAction
    target_class: str | None = None  # "move" only


@dataclass(frozen=True)
class LabelEditPlan:
    """The pending edits of one image folder, at most one per image (a later edit of an image
    replaces its earlier one), in the order they were made. Immutable: every change returns a
    new plan, so a front end can keep old plans for undo."""

    root: str
    class_names: tuple[str, ...]
    split_folders: bool = False  # the folder has train/ and val/, each with the class folders
    edits: tuple[LabelEdit, ...] = ()

    @classmethod
    def for_dataset(cls, dataset: DatasetInfo) -> LabelEditPlan:
        """An empty plan for the folder ``dataset`` was scanned from."""
        return cls(str(dataset.root), tuple(dataset.class_names), dataset.predefined_split is not None)

    def __len__(self) -> int:
        return len(self.edits)

    def edit_for(self, path: str) -> LabelEdit | None:
        """The pending edit of ``path``, if any."""
        for edit in self.edits:
            if edit.path == path:
                return edit
        return None

    def with_edits(self, edits: Iterable[LabelEdit]) -> LabelEditPlan:
        """This plan with ``edits`` added (each replacing a pending edit of the same image).
        Raises :class:`LabelEditError` for an image outside the folder's class folders, an
        unknown action or class, or a move into the class the image is already in."""
        new = list(edits)
        problems = [problem for edit in new if (problem := self._problem(edit))]
        if problems:
            raise LabelEditError(problems)
        replaced = {edit.path for edit in new}
        kept = [edit for edit in self.edits if edit.path not in replaced]
        latest = {edit.path: edit for edit in new}  # the last of two edits of one image wins
        return replace(self, edits=tuple(kept + [latest[p] for p in dict.fromkeys(e.path for e in new)]))

    def without(self, paths: Iterable[str]) -> LabelEditPlan:
        """This plan without the pending edits of ``paths``."""
        dropped = set(paths)
        return replace(self, edits=tuple(edit for edit in self.edits if edit.path not in dropped))

    @property
    def irreversible(self) -> tuple[LabelEdit, ...]:
        """The edits that undo cannot take back (moves to the trash)."""
        return tuple(edit for edit in self.edits if edit.action == "trash")

    def relative(self, path: str) -> str:
        """``path`` relative to the folder, "/"-separated (as the exclusion list has it)."""
        return _relative(path, self.root)

    def class_of(self, path: str) -> str | None:
        """The class folder ``path`` is in, or None when it is in none of them."""
        parts = PurePosixPath(self.relative(path)).parts
        if self.split_folders:
            if not parts or parts[0] not in (_TRAIN_DIR, _VAL_DIR):
                return None
            parts = parts[1:]
        if len(parts) < 2 or parts[0] in ("..", "") or parts[0] not in self.class_names:
            return None
        return parts[0]

    def target(self, edit: LabelEdit) -> str | None:
        """Where a move puts the image: straight in the target class folder (of the same
        train/ or val/ part), under its own name; None for other edits."""
        if edit.action != "move" or edit.target_class is None:
            return None
        parts = PurePosixPath(self.relative(edit.path)).parts
        folder = Path(self.root, parts[0]) if self.split_folders else Path(self.root)
        return str(folder / edit.target_class / Path(edit.path).name)

    def describe(self, edit: LabelEdit) -> str:
        """The edit in a few words for people, e.g. "cats/cat_1.png → dogs"."""
        shown = printable_path(self.relative(edit.path))
        if edit.action == "move":
            return f"{shown} → {edit.target_class}"
        if edit.action == "exclude":
            return f"{shown}: exclude from training"
        return f"{shown}: move to the trash"

    def _problem(self, edit: LabelEdit) -> str | None:
        shown = printable_path(edit.path)
        if edit.action not in EDIT_ACTIONS:
            return f"unknown change {edit.action!r} for {shown}; use one of {', '.join(EDIT_ACTIONS)}"
        current = self.class_of(edit.path)
        if current is None:
            return f"{shown} is not an image in a class folder of {printable_path(self.root)}"
        if edit.action != "move":
            return None
        if edit.target_class not in self.class_names:
            return (f"there is no class {edit.target_class!r} in {printable_path(self.root)}; the classes are "
                    f"{', '.join(self.class_names)}")
        if edit.target_class == current:
            return f"{shown} is already in class {current!r}"
        return None


@dataclass(frozen=True)
class AppliedEdit:
    """An edit that was carried out: ``target`` is where a move put the file; for an
    exclusion, the exclusion list when this edit added the line (None: it was listed already,
    so undo leaves it); None for the trash."""

    edit: LabelEdit
    target: str | None = None


@dataclass(frozen=True)
class LabelEditReport:
    """What :func:`apply_plan` (or, with ``undo`` set, :func:`revert_edits`) did: ``done`` in
    the order done; ``failed`` is the edit that went wrong with ``error`` saying why, and
    ``not_done`` the edits not attempted after it; ``kept`` (undo only) are the applied edits
    that could not be undone (files in the trash)."""

    root: str
    done: tuple[AppliedEdit, ...]
    failed: LabelEdit | None = None
    error: str = ""
    not_done: tuple[LabelEdit, ...] = ()
    kept: tuple[AppliedEdit, ...] = ()
    undo: bool = False

    @property
    def complete(self) -> bool:
        return self.failed is None and not self.not_done

    def summary(self) -> str:
        """One paragraph for people: what was done, what failed and what was not done."""
        plan = LabelEditPlan(self.root, ())
        counts = {action: sum(1 for a in self.done if a.edit.action == action) for action in EDIT_ACTIONS}
        if self.undo:
            parts = [f"moved {_images(counts['move'])} back" if counts["move"] else "",
                     f"took {_images(counts['exclude'])} off the exclusion list" if counts["exclude"] else ""]
        else:
            parts = [f"moved {_images(counts['move'])} to another class" if counts["move"] else "",
                     f"excluded {_images(counts['exclude'])} from training" if counts["exclude"] else "",
                     f"moved {_images(counts['trash'])} to the trash" if counts["trash"] else ""]
        done = ", ".join(part for part in parts if part)
        text = (done[0].upper() + done[1:] + ".") if done else "Nothing was changed."
        if self.failed is not None:
            text += f" Stopped at {plan.describe(self.failed)}: {self.error}."
        if self.not_done:
            text += f" Not done: {'; '.join(plan.describe(edit) for edit in self.not_done)}."
        if self.kept:
            text += (f" {_images(len(self.kept)).capitalize()} stayed in the trash (restore "
                     f"{'it' if len(self.kept) == 1 else 'them'} from the desktop's trash): "
                     f"{'; '.join(printable_path(plan.relative(a.edit.path)) for a in self.kept)}.")
        return text


def _images(count: int) -> str:
    return f"{count} image{'s' if count != 1 else ''}"


# --- checking -----------------------------------------------------------------------------------


def check_plan(plan: LabelEditPlan) -> tuple[str, ...]:
    """Every reason ``plan`` cannot be applied now, one sentence each (empty: it can)."""
    problems: list[str] = []
    targets: dict[str, str] = {}
    for edit in plan.edits:
        shown = printable_path(plan.relative(edit.path))
        if not os.path.lexists(edit.path):
            problems.append(f"{shown} no longer exists")
            continue
        if edit.action in ("move", "trash") and not os.access(os.path.dirname(edit.path), os.W_OK | os.X_OK):
            problems.append(f"cannot change the folder of {shown}: permission denied")
        target = plan.target(edit)
        if target is None:
            continue
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            problems.append(f"the class folder {printable_path(plan.relative(folder))} no longer exists")
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"cannot write to the class folder {printable_path(plan.relative(folder))}")
        if os.path.lexists(target):
            problems.append(f"{printable_path(plan.relative(target))} already exists; {shown} would overwrite it")
        elif target in targets:
            problems.append(f"{shown} and {targets[target]} would both become "
                            f"{printable_path(plan.relative(target))}")
        targets.setdefault(target, shown)
    if any(edit.action == "exclude" for edit in plan.edits):
        try:
            read_excluded(plan.root)
        except DataError as error:
            problems.append(str(error))
        if not os.access(plan.root, os.W_OK | os.X_OK):
            problems.append(f"cannot write the exclusion list in {printable_path(plan.root)}: permission denied")
    return tuple(problems)


# --- applying -----------------------------------------------------------------------------------


def apply_plan(plan: LabelEditPlan) -> LabelEditReport:
    """Carry out ``plan`` (see the module docstring); raises :class:`LabelEditError`, with
    nothing changed, when :func:`check_plan` finds a problem."""
    problems = check_plan(plan)
    if problems:
        raise LabelEditError(problems)
    exclusions = [edit for edit in plan.edits if edit.action == "exclude"]
    ordered = exclusions + [e for e in plan.edits if e.action == "move"] + [e for e in plan.edits if e.action == "trash"]
    done: list[AppliedEdit] = []
    if exclusions:
        try:
            added = _add_exclusions(plan.root, [plan.relative(edit.path) for edit in exclusions])
        except (OSError, DataError) as error:
            return LabelEditReport(plan.root, (), exclusions[0], f"could not write the exclusion list ({_reason(error)})",
                                   tuple(ordered[1:]))
        listed = str(Path(plan.root) / EXCLUDE_FILE)
        done += [AppliedEdit(edit, listed if plan.relative(edit.path) in added else None) for edit in exclusions]
    for index in range(len(exclusions), len(ordered)):
        edit = ordered[index]
        try:
            if edit.action == "move":
                target = plan.target(edit)
                assert target is not None
                _move_no_overwrite(edit.path, target)
                done.append(AppliedEdit(edit, target))
            else:
                send2trash(edit.path)
                done.append(AppliedEdit(edit))
        except OSError as error:
            what = f"could not move it to {edit.target_class}" if edit.action == "move" else "could not trash it"
            return LabelEditReport(plan.root, tuple(done), edit, f"{what} ({_reason(error)})", tuple(ordered[index + 1:]))
    return LabelEditReport(plan.root, tuple(done))


def revert_edits(report: LabelEditReport) -> LabelEditReport:
    """Undo what ``report`` (from :func:`apply_plan`) says was done, latest first: moved files
    move back, exclusions it added leave the list; trashed files stay in the trash (listed in
    ``kept``). Raises :class:`LabelEditError`, with nothing changed, when a moved file is gone
    or its old place is taken."""
    if report.undo:
        raise LabelEditError(["a report of an undo cannot be undone; apply the edits again instead"])
    plan = LabelEditPlan(report.root, ())
    moves = [applied for applied in reversed(report.done) if applied.edit.action == "move"]
    problems = []
    for applied in moves:
        assert applied.target is not None
        if not os.path.lexists(applied.target):
            problems.append(f"{printable_path(plan.relative(applied.target))} is gone, so it cannot move back")
        elif os.path.lexists(applied.edit.path):
            problems.append(f"{printable_path(plan.relative(applied.edit.path))} exists again, so "
                            f"{printable_path(plan.relative(applied.target))} cannot move back there")
    if problems:
        raise LabelEditError(problems)
    kept = tuple(applied for applied in report.done if applied.edit.action == "trash")
    done: list[AppliedEdit] = []
    for index, applied in enumerate(moves):
        assert applied.target is not None
        try:
            _move_no_overwrite(applied.target, applied.edit.path)
        except OSError as error:
            left = tuple(a.edit for a in moves[index + 1:])
            return LabelEditReport(report.root, tuple(done), applied.edit, f"could not move it back ({_reason(error)})",
                                   left, kept, undo=True)
        done.append(AppliedEdit(applied.edit, applied.edit.path))
    listed = [applied for applied in report.done if applied.edit.action == "exclude" and applied.target is not None]
    if listed:
        try:
            _remove_exclusions(report.root, {plan.relative(applied.edit.path) for applied in listed})
        except (OSError, DataError) as error:
            return LabelEditReport(report.root, tuple(done), listed[0].edit,
                                   f"could not update the exclusion list ({_reason(error)})",
                                   tuple(a.edit for a in listed[1:]), kept, undo=True)
        done += listed
    return LabelEditReport(report.root, tuple(done), kept=kept, undo=True)


def _move_no_overwrite(source: str, target: str) -> None:
    """Move ``source`` to ``target``, which must not exist. A hard link refuses an existing
    target atomically; where there are no hard links (FAT, some shares, another device) the
    file is moved after checking the target once more."""
    try:
        os.link(source, target, follow_symlinks=False)  # a link moves as the link, not its target
    except FileExistsError:
        raise
    except (OSError, NotImplementedError) as error:  # NotImplementedError: no linkat (Windows)
        if isinstance(error, OSError) and error.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "the target exists", target) from None
        shutil.move(source, target)
        return
    os.unlink(source)  # the image lives on under its new name


def _add_exclusions(root: str, relative: list[str]) -> set[str]:
    """Append the paths not listed yet to the exclusion list (one atomic write); returns the
    ones added."""
    path = Path(root) / EXCLUDE_FILE
    listed = read_excluded(root)
    text = path.read_text(encoding="utf-8") if path.exists() else _EXCLUDE_HEADER
    added = [line for line in dict.fromkeys(relative) if line not in listed]
    if added:
        if text and not text.endswith("\n"):
            text += "\n"
        write_text_atomically(path, text + "".join(f"{line}\n" for line in added))
    return set(added)


def _remove_exclusions(root: str, relative: set[str]) -> None:
    """Drop the lines naming ``relative`` from the exclusion list, keeping every other line."""
    path = Path(root) / EXCLUDE_FILE
    read_excluded(root)  # a file that is not UTF-8 text is refused, not rewritten
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or PurePosixPath(line.strip()).as_posix() not in relative]
    write_text_atomically(path, "".join(kept))


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
