"""Pending label edits (core/label_edits.py) and the exclusion list the folder scan honours
(core/data.py), on real image files in temporary folders; "trash" is the real send2trash,
pointed at a trash folder inside the test's own temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headswap_gui.core.data import EXCLUDE_FILE, read_excluded, scan_image_folder
from headswap_gui.core.errors import DataError
from headswap_gui.core.label_edits import (
    LabelEdit,
    LabelEditError,
    LabelEditPlan,
    apply_plan,
    check_plan,
    revert_edits,
)
from headswap_gui.core.label_issues import broken_files


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(names))
    for name in names:
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / name)


@pytest.fixture
def pets(tmp_path) -> Path:
    root = tmp_path / "pets"
    write_images(root / "cats", ["c0.png", "c1.png", "c2.png"])
    write_images(root / "dogs", ["d0.png", "d1.png", "d2.png"])
    return root


@pytest.fixture
def trash(tmp_path, monkeypatch) -> Path:
    """The freedesktop trash send2trash uses, inside ``tmp_path`` (never the user's)."""
    import send2trash

    if send2trash.send2trash.__module__ != "send2trash.plat_other":
        pytest.skip("the trash test drives send2trash's freedesktop.org implementation")
    from send2trash import plat_other

    home = tmp_path / "home"
    (home / "share").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))  # same device as the images: the home trash is used
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(home / "share"))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(home / "share" / "Trash"))
    return home / "share" / "Trash"


def labels(root: Path) -> dict[str, str]:
    info = scan_image_folder(root)
    return {Path(s.path).name: info.class_names[s.label] for s in info.samples}


def plan_for(root: Path, *edits: LabelEdit) -> LabelEditPlan:
    return LabelEditPlan.for_dataset(scan_image_folder(root)).with_edits(edits)


def test_a_plan_changes_nothing_until_applied_and_undo_puts_it_back(pets):
    before = labels(pets)
    plan = plan_for(pets, LabelEdit(str(pets / "cats" / "c1.png"), "move", "dogs"),
                    LabelEdit(str(pets / "dogs" / "d2.png"), "exclude"))
    assert len(plan) == 2 and labels(pets) == before and not (pets / EXCLUDE_FILE).exists()
    assert plan.describe(plan.edits[0]) == "cats/c1.png → dogs" and plan.irreversible == ()

    report = apply_plan(plan)
    assert report.complete
    assert [(a.edit.action, a.target) for a in report.done] == [
        ("exclude", str(pets / EXCLUDE_FILE)), ("move", str(pets / "dogs" / "c1.png"))]
    assert report.summary() == "Moved 1 image to another class, excluded 1 image from training."
    after = labels(pets)
    assert after["c1.png"] == "dogs" and "d2.png" not in after
    skipped = {Path(s.path).name: s.reason for s in scan_image_folder(pets).skipped}
    assert skipped == {"d2.png": "excluded"}  # the list itself is no stray file

    undone = revert_edits(report)
    assert undone.complete and undone.undo and undone.summary() == (
        "Moved 1 image back, took 1 image off the exclusion list.")
    assert labels(pets) == before and read_excluded(pets) == frozenset()


def test_the_exclusion_list_keeps_what_the_user_wrote(pets):
    (pets / EXCLUDE_FILE).write_text("# mine\ncats/c0.png\n\n./dogs/d0.png", encoding="utf-8")
    assert read_excluded(pets) == {"cats/c0.png", "dogs/d0.png"}
    assert "c0.png" not in labels(pets) and "d0.png" not in labels(pets)
    report = apply_plan(plan_for(pets, LabelEdit(str(pets / "cats" / "c2.png"), "exclude")))
    assert (pets / EXCLUDE_FILE).read_text(encoding="utf-8") == "# mine\ncats/c0.png\n\n./dogs/d0.png\ncats/c2.png\n"
    revert_edits(report)
    assert (pets / EXCLUDE_FILE).read_text(encoding="utf-8") == "# mine\ncats/c0.png\n\n./dogs/d0.png\n"


def test_excluded_files_are_neither_trained_on_nor_broken(pets):
    (pets / "cats" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (pets / EXCLUDE_FILE).write_text("cats/c1.png\ncats/bad.png\n", encoding="utf-8")
    info = scan_image_folder(pets)
    assert {Path(s.path).name: s.reason for s in info.skipped} == {"c1.png": "excluded", "bad.png": "excluded"}
    assert broken_files(info) == ()  # the label check does not list them as broken either
    (pets / EXCLUDE_FILE).write_text("cats/c0.png\ncats/c1.png\ncats/c2.png\ncats/bad.png\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'cats' .* no usable images \(4 excluded\)"):
        scan_image_folder(pets)


def test_an_exclusion_list_that_is_not_text_is_refused_by_name(pets):
    (pets / EXCLUDE_FILE).write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match=f"Cannot read the exclusion list .*{EXCLUDE_FILE}.*UTF-8"):
        scan_image_folder(pets)


def test_nothing_is_touched_when_a_move_would_overwrite(pets):
    write_images(pets / "dogs", ["c1.png"])  # a dog photo that happens to have the cat's name
    original = (pets / "dogs" / "c1.png").read_bytes()
    plan = plan_for(pets, LabelEdit(str(pets / "dogs" / "d0.png"), "exclude"),
                    LabelEdit(str(pets / "cats" / "c1.png"), "move", "dogs"))
    assert check_plan(plan) == ("dogs/c1.png already exists; cats/c1.png would overwrite it",)
    with pytest.raises(LabelEditError, match="would overwrite"):
        apply_plan(plan)
    assert (pets / "cats" / "c1.png").exists() and (pets / "dogs" / "c1.png").read_bytes() == original
    assert not (pets / EXCLUDE_FILE).exists()  # the exclusion before it was not written either


def test_a_missing_source_is_named_before_anything_moves(pets):
    plan = plan_for(pets, LabelEdit(str(pets / "cats" / "c0.png"), "move", "dogs"),
                    LabelEdit(str(pets / "cats" / "c2.png"), "trash"))
    (pets / "cats" / "c2.png").rename(pets / "c2-elsewhere.png")
    with pytest.raises(LabelEditError) as caught:
        apply_plan(plan)
    assert caught.value.problems == ("cats/c2.png no longer exists",)
    assert (pets / "cats" / "c0.png").exists()


def test_bad_edits_are_refused_with_a_sentence(pets, tmp_path):
    plan = LabelEditPlan.for_dataset(scan_image_folder(pets))
    write_images(tmp_path / "elsewhere", ["x.png"])
    cases = [
        (LabelEdit(str(tmp_path / "elsewhere" / "x.png"), "exclude"), "is not an image in a class folder of"),
        (LabelEdit(str(pets / "cats" / "c0.png"), "move", "birds"), "there is no class 'birds' .* cats, dogs"),
        (LabelEdit(str(pets / "cats" / "c0.png"), "move", "cats"), "already in class 'cats'"),
        (LabelEdit(str(pets / "cats" / "c0.png"), "delete"), "unknown change 'delete'"),
    ]
    for edit, message in cases:
        with pytest.raises(LabelEditError, match=message):
            plan.with_edits([edit])


def test_one_pending_edit_per_image_the_latest_wins(pets):
    c0, c1 = str(pets / "cats" / "c0.png"), str(pets / "cats" / "c1.png")
    plan = plan_for(pets, LabelEdit(c0, "move", "dogs"), LabelEdit(c1, "exclude"))
    plan = plan.with_edits([LabelEdit(c0, "trash")])
    assert [(e.path, e.action) for e in plan.edits] == [(c1, "exclude"), (c0, "trash")]
    assert plan.irreversible == (LabelEdit(c0, "trash"),) and plan.edit_for(c0).action == "trash"
    assert plan.without([c0]).edits == (LabelEdit(c1, "exclude"),)


def test_two_moves_onto_one_name_are_refused(pets):
    write_images(pets / "birds", ["b0.png"])
    write_images(pets / "dogs", ["same.png"])
    write_images(pets / "cats", ["same.png"])
    plan = plan_for(pets, LabelEdit(str(pets / "cats" / "same.png"), "move", "birds"),
                    LabelEdit(str(pets / "dogs" / "same.png"), "move", "birds"))
    assert check_plan(plan) == ("dogs/same.png and cats/same.png would both become birds/same.png",)


def test_trash_goes_to_the_desktop_trash_and_undo_says_it_stays_there(pets, trash):
    plan = plan_for(pets, LabelEdit(str(pets / "cats" / "c0.png"), "trash"),
                    LabelEdit(str(pets / "dogs" / "d0.png"), "move", "cats"))
    report = apply_plan(plan)
    assert [a.edit.action for a in report.done] == ["move", "trash"]  # the irreversible step last
    assert not (pets / "cats" / "c0.png").exists() and (trash / "files" / "c0.png").is_file()
    assert "Path=" in (trash / "info" / "c0.png.trashinfo").read_text()
    undone = revert_edits(report)
    assert (pets / "dogs" / "d0.png").exists() and not (pets / "cats" / "c0.png").exists()
    assert [a.edit.path for a in undone.kept] == [str(pets / "cats" / "c0.png")]
    assert undone.summary() == ("Moved 1 image back. 1 image stayed in the trash (restore it from the "
                                "desktop's trash): cats/c0.png.")


def test_a_failure_part_way_says_what_was_done_and_what_not(pets, trash, monkeypatch):
    from send2trash import plat_other

    (trash.parent / "not-a-folder").write_text("")  # the trash cannot be made under a file
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(trash.parent / "not-a-folder" / "Trash"))
    plan = plan_for(pets, LabelEdit(str(pets / "cats" / "c0.png"), "trash"),
                    LabelEdit(str(pets / "cats" / "c1.png"), "trash"),
                    LabelEdit(str(pets / "dogs" / "d0.png"), "move", "cats"))
    report = apply_plan(plan)
    assert not report.complete
    assert [a.edit.path for a in report.done] == [str(pets / "dogs" / "d0.png")]
    assert report.failed == LabelEdit(str(pets / "cats" / "c0.png"), "trash")
    assert report.not_done == (LabelEdit(str(pets / "cats" / "c1.png"), "trash"),)
    assert report.summary().startswith(
        "Moved 1 image to another class. Stopped at cats/c0.png: move to the trash: could not trash it (")
    assert report.summary().endswith("Not done: cats/c1.png: move to the trash.")
    assert (pets / "cats" / "d0.png").exists() and (pets / "cats" / "c0.png").exists()
    assert revert_edits(report).complete and (pets / "dogs" / "d0.png").exists()


def test_undo_refuses_when_the_old_place_is_taken(pets):
    report = apply_plan(plan_for(pets, LabelEdit(str(pets / "cats" / "c0.png"), "move", "dogs")))
    write_images(pets / "cats", ["c0.png"])  # a new file under the old name
    with pytest.raises(LabelEditError, match="cats/c0.png exists again"):
        revert_edits(report)
    assert (pets / "dogs" / "c0.png").exists()


def test_a_move_stays_in_its_part_of_a_train_val_folder(tmp_path):
    root = tmp_path / "split"
    for part in ("train", "val"):
        write_images(root / part / "cats", ["c0.png", "c1.png"])
        write_images(root / part / "dogs", ["d0.png", "d1.png"])
    os.rename(root / "val" / "cats" / "c0.png", root / "val" / "cats" / "v0.png")
    plan = plan_for(root, LabelEdit(str(root / "val" / "cats" / "v0.png"), "move", "dogs"),
                    LabelEdit(str(root / "train" / "dogs" / "d1.png"), "exclude"))
    apply_plan(plan)
    assert (root / "val" / "dogs" / "v0.png").exists()
    assert read_excluded(root) == {"train/dogs/d1.png"}
    info = scan_image_folder(root)
    assert str(root / "train" / "dogs" / "d1.png") not in {s.path for s in info.samples}
