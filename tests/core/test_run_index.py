"""The runs folder the window and the CLI share: `headswap train` without -o writes there,
`headswap runs` lists what is there, with a status a person can act on."""

from __future__ import annotations

import json
import os

import pytest
from test_run_integrity import TINY, write_colours

from headswap_gui.cli import main
from headswap_gui.core.run_index import RUNS_DIR_VARIABLE, list_runs
from headswap_gui.core.run_lock import RunLock


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv(RUNS_DIR_VARIABLE, str(root))
    return root


def test_train_without_output_writes_into_the_runs_folder_and_runs_lists_it(tmp_path, runs_root, capsys):
    data = write_colours(tmp_path / "data", per_class=6)
    assert main(["train", TINY[0], str(data), *TINY[1:], "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    [folder] = list(runs_root.iterdir())
    assert f"run folder: {folder}" in err
    assert main(["runs", "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["folder"] == str(folder) and run["status"] == "completed"
    assert run["epochs_done"] == 2 and run["epochs_planned"] == 2 and run["class_names"] == ["blue", "green", "red"]
    assert run["source"] == "timm:test_efficientnet" and run["dataset_root"] == str(data)
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "completed" in table and "2/2" in table and str(folder) in table


def test_unfinished_runs_say_whether_they_still_run(tmp_path, runs_root, capsys):
    data = write_colours(tmp_path / "data", per_class=6)
    run = runs_root / "a"
    assert main(["train", TINY[0], str(data), "-o", str(run), *TINY[1:], "--epochs", "1"]) == 0
    manifest = json.loads((run / "headswap.json").read_text())
    manifest["finished"] = None  # as a killed run leaves it
    (run / "headswap.json").write_text(json.dumps(manifest))
    (run / ".headswap.lock").write_text(" " * 16 + "999999999\n")  # a process that is gone
    assert [s.status for s in list_runs(runs_root)] == ["interrupted"]
    with RunLock(run):  # this process holds it now
        assert [s.status for s in list_runs(runs_root)] == ["running"]
    assert os.getpid() == int((run / ".headswap.lock").read_text().split()[0])


def test_damaged_runs_are_listed_with_the_reason(runs_root):
    (runs_root / "broken").mkdir(parents=True)
    (runs_root / "broken" / "headswap.json").write_text("{")
    [summary] = list_runs(runs_root)
    assert summary.status == "damaged" and "not valid JSON" in summary.problem


def test_resume_needs_a_folder(tmp_path, runs_root, capsys):
    data = write_colours(tmp_path / "data", per_class=3)
    assert main(["train", TINY[0], str(data), "--resume"]) == 2
    assert "--resume needs the run folder" in capsys.readouterr().err
