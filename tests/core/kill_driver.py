"""Kill ``headswap train`` with SIGKILL at every file-system boundary of a run, resume it,
and check that the run ends exactly as an uninterrupted one.

Run by ``test_run_integrity.py`` as its own process::

    python kill_driver.py DATA_DIR WORK_DIR REPORT.json

The boundaries are found by instrumenting the writes, not by timing: in a forked child,
``os.replace`` and ``os.unlink`` on paths inside the run folder are counted, and at the
chosen one the child kills itself with SIGKILL just before or just after the operation —
the two instants at which a crash can catch a commit. This process imports torch once and
runs no torch operation itself, so each child starts in milliseconds with clean thread
pools.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import timm  # noqa: F401
import torch  # noqa: F401  - imported once here, used by every forked child
import torchvision  # noqa: F401

from headswap_gui.cli import main as cli_main

TIMING_FIELDS = ("seconds", "images_per_second")


def train_args(data: Path, run: Path, resume: bool = False) -> list[str]:
    argv = ["train", "timm:test_efficientnet", str(data), "-o", str(run), "--epochs", "2", "--image-size", "32",
            "--batch-size", "8", "--threads", "1", "--seed", "3"]
    return argv + (["--resume"] if resume else [])


def run_child(argv: list[str], run: Path, kill_at: tuple[int, str] | None, count_file: Path | None = None) -> int:
    """Run the CLI in a forked child; returns its exit status, or -9 when it was killed."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child exits below
            counter = instrument(run, kill_at)
            code = cli_main(argv)
            if count_file is not None:
                count_file.write_text(str(counter[0]))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def instrument(run: Path, kill_at: tuple[int, str] | None) -> list[int]:
    """Count renames and deletions inside ``run``; SIGKILL this process at ``kill_at``."""
    counter = [0]
    root = str(run.resolve())

    def wrap(original):
        def boundary(*args, **kwargs):
            target = os.path.abspath(os.fspath(args[-1] if original is os.replace else args[0]))
            inside = target.startswith(root + os.sep)
            if inside:
                counter[0] += 1
                if kill_at == (counter[0], "before"):
                    os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if inside and kill_at == (counter[0], "after"):
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return boundary

    os.replace = wrap(os.replace)
    os.unlink = os.remove = wrap(os.unlink)
    return counter


def outcome(run: Path) -> dict:
    """What a finished run holds, without the timing figures that differ between runs."""
    manifest = json.loads((run / "headswap.json").read_text())
    epochs = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in manifest["epochs"]]
    with open(run / "metrics.csv", newline="") as stream:
        rows = [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in csv.DictReader(stream)]
    leftovers = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))
    return {"epochs": epochs, "metrics": rows, "finished": manifest["finished"], "best_epoch": manifest["best_epoch"],
            "weights_file": manifest["weights_file"], "leftovers": leftovers}


def loads(run: Path) -> bool:
    """Whether the killed folder opens as a model (when it committed anything) in a child."""
    if not (run / "headswap.json").is_file():
        return True  # nothing committed: the folder holds no model yet, and resume starts it
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            from headswap_gui.core.sources import load_model

            load_model(str(run))
            ok = True
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def main() -> int:
    data, work, report_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    reference_run, count_file = work / "reference", work / "count"
    assert run_child(train_args(data, reference_run), reference_run, None, count_file) == 0
    boundaries = int(count_file.read_text())
    reference = outcome(reference_run)
    trials = []
    for index in range(1, boundaries + 1):
        for moment in ("before", "after"):
            run = work / f"kill-{index}-{moment}"
            killed = run_child(train_args(data, run), run, (index, moment)) == -signal.SIGKILL
            opens = loads(run)
            resumed = run_child(train_args(data, run, resume=True), run, None)
            result = outcome(run) if resumed == 0 else None
            trials.append({
                "boundary": index, "moment": moment, "killed": killed, "loads": opens, "resume_exit": resumed,
                "complete": result == reference, "result": result if result != reference else None,
            })
    report = {"boundaries": boundaries, "kill_points": len(trials), "reference": reference, "trials": trials,
              "complete": sum(t["complete"] and t["killed"] and t["loads"] for t in trials)}
    report_path.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
