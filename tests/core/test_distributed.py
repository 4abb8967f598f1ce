"""``headswap train`` under the real ``torchrun``: 2 gloo processes on the CPU, a tiny model
saved as a model folder (fixed weights, so every launch starts from the same model) and real
PNGs. Each launch is compared with the same run in one process.

Tolerances: the cached-head and the frozen-backbone DDP runs take exactly the one-process
steps (the ranks share each batch and the loss is weighted so the averaged gradient is the
batch's), so they differ only by float rounding (the backbone sees 4-image parts instead of
8-image batches; DDP adds the two gradients in another order): losses within 1e-4, and the
accuracy at most one validation image apart (one image near the decision boundary could flip;
measured: identical to 4 decimals). A whole model that trains BatchNorm layers is not
compared: each rank normalises its own 4 images (per-rank statistics, as DDP does without
SyncBatchNorm), so its curve differs by design.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headswap_gui.cli import main
from headswap_gui.core import sources
from headswap_gui.core.distributed import Group, batch_slices, launch_env, loss_weights
from headswap_gui.core.run_spec import TrainSpec, write_train_spec
from headswap_gui.core.runs import save_model_folder
from headswap_gui.core.train_config import TrainConfig

LAUNCH_TIMEOUT = 120  # seconds for a whole launch; a hang fails the test instead of the CI job
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A model folder (timm's test EfficientNet, seeded, 3-class head) and 3 × 30 PNGs: 72
    training images, enough for the streaming cache's first chunk (64) to teach the head."""
    root = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3)
    save_model_folder(root / "model", loaded)
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / "data" / name).mkdir(parents=True)
        for index in range(30):
            pixels = np.clip(np.array(colour) + rng.normal(0, 60, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "data" / name / f"{index}.png")
    return root / "model", root / "data"


def headswap_command() -> list[str]:
    """The installed ``headswap`` script, as ``"$(command -v headswap)"`` names it (a pyenv
    shim is a shell script, so take the one beside this interpreter), else the module."""
    script = Path(sys.executable).with_name("headswap")
    return [str(script)] if script.is_file() else ["-m", "headswap_gui.cli"]


class Launch:
    """``python -m torch.distributed.run`` (torchrun) with 2 processes, its stderr read on a
    thread so the test can wait for a line with a timeout."""

    def __init__(self, tmp_path: Path, args: list[str], *, rdzv: bool = False) -> None:
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        self.runs = tmp_path / "runs-root"
        self.runs.mkdir()
        env = {
            **os.environ, "OMP_NUM_THREADS": "1", "HEADSWAP_RUNS_DIR": str(self.runs),
            "HEADSWAP_COLLECTIVE_TIMEOUT": "30",
        }
        launcher = ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0",
                    "--rdzv-id", "test"] if rdzv else ["--standalone"]
        command = [sys.executable, "-m", "torch.distributed.run", *launcher, "--nproc_per_node", "2",
                   *headswap_command(), "train", *args]
        self.process = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = LAUNCH_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the launch ended before a line starting {prefix!r}:\n{self.output()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = LAUNCH_TIMEOUT) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        while not self.lines.empty():
            line = self.lines.get_nowait()
            if line is not None:
                self.seen.append(line)
        return code

    def output(self) -> str:
        return "".join(self.seen)

    def rank_pids(self) -> dict[int, int]:
        """The worker processes torchrun started, by rank (read from /proc)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid:
                found.update({int(item[5:]): int(entry.name) for item in environ if item.startswith(b"RANK=")})
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(LAUNCH_TIMEOUT)


@pytest.fixture
def launches():
    started: list[Launch] = []
    yield started
    for launch in started:
        launch.kill()


def one_process(args: list[str]) -> None:
    assert main(["train", *args, "--threads", "1"]) == 0


def manifest(run: Path) -> dict:
    return json.loads((run / "headswap.json").read_text())


def assert_complete_and_alone(run: Path, launch: Launch, epochs: int) -> dict:
    """Rank 0's folder holds a finished run and nothing else; no rank wrote anywhere else
    (the launch's working folder and the default runs folder stay empty)."""
    data = manifest(run)
    assert data["finished"] == "completed" and len(data["epochs"]) == epochs
    names = {p.name for p in run.iterdir()}
    committed = {"headswap.json", "metrics.csv", data["weights_file"], data["checkpoint_file"]}
    assert names == committed | {".headswap.lock"}, names  # rank 0's lock file stays, unlocked
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == epochs + 1
    assert list(launch.cwd.iterdir()) == [] and list(launch.runs.iterdir()) == []
    assert data["distributed"]["world_size"] == 2 and data["distributed"]["backend"] == "gloo"
    return data


def assert_same_curves(ddp: dict, single: dict) -> None:
    n_val = len(single["split"]["val"])
    assert ddp["split"] == single["split"]
    for mine, theirs in zip(ddp["epochs"], single["epochs"], strict=True):
        assert abs(mine["val_accuracy"] - theirs["val_accuracy"]) <= 1 / n_val + 1e-9, (mine, theirs)
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-4)
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4)


STREAMED = re.compile(r"features cached for (\d+)/72 training images: .* val loss ([\d.]+) acc ([\d.]+)%")


def test_two_processes_learn_a_cached_head_as_one_does(folders, tmp_path, launches, capsys):
    model, data = folders
    args = [str(model), str(data), "--epochs", "3", "--image-size", "32", "--batch-size", "8", "--seed", "3"]
    started = time.perf_counter()
    launch = Launch(tmp_path, [*args, "-o", str(tmp_path / "ddp")], rdzv=True)
    launches.append(launch)
    assert launch.finish() == 0, launch.output()
    ddp_seconds = time.perf_counter() - started
    capsys.readouterr()
    started = time.perf_counter()
    one_process([*args, "-o", str(tmp_path / "one")])
    single_seconds = time.perf_counter() - started
    streamed = STREAMED.findall(capsys.readouterr().err)
    with capsys.disabled():
        print(f"\n2 processes: {ddp_seconds:.1f} s with the launch; 1 process: {single_seconds:.1f} s in-process")
    text = launch.output()
    # the head learned while the ranks filled the cache, at the same points and as well as in one process
    assert streamed and STREAMED.findall(text) == streamed
    assert text.count("training 3 classes") == 1  # rank 1 prints nothing of its own
    ddp = assert_complete_and_alone(tmp_path / "ddp", launch, 3)
    assert ddp["distributed"]["batch_size_per_rank"] == [4, 4]
    assert ddp["distributed"]["data_parallel"] == "gathered feature cache"
    assert_same_curves(ddp, manifest(tmp_path / "one"))


def test_ddp_from_a_config_file_matches_one_process_on_uneven_shares(folders, tmp_path, launches):
    """A frozen backbone without the cache: the head trains through DDP; batches of 7 split
    4 + 3, which only the loss weights make equal to one process's mean."""
    model, data = folders
    config = TrainConfig(epochs=2, batch_size=7, lr=1e-2, image_size=32, seed=3, cache_features="off")
    spec_file = write_train_spec(tmp_path / "job.json", TrainSpec(str(model), str(data), config))
    launch = Launch(tmp_path, ["--config", str(spec_file), "-o", str(tmp_path / "ddp")])
    launches.append(launch)
    assert launch.finish() == 0, launch.output()
    one_process(["--config", str(spec_file), "-o", str(tmp_path / "one")])
    ddp = assert_complete_and_alone(tmp_path / "ddp", launch, 2)
    assert ddp["distributed"]["batch_size_per_rank"] == [4, 3] and ddp["distributed"]["data_parallel"] == "ddp"
    single = manifest(tmp_path / "one")
    assert {**ddp["training"], "cpu_threads": 1} == single["training"]
    assert_same_curves(ddp, single)


def full_run_args(model: Path, data: Path, run: Path) -> list[str]:
    # many epochs, so the run is still going when the test acts after the first
    return [str(model), str(data), "-o", str(run), "--epochs", "200", "--image-size", "32", "--batch-size", "8",
            "--freeze", "full", "--lr", "3e-3"]


def test_a_killed_rank_ends_the_launch_with_a_message(folders, tmp_path, launches):
    run = tmp_path / "run"
    launch = Launch(tmp_path, full_run_args(*folders, run))
    launches.append(launch)
    launch.wait_for_line("epoch 1/200")
    os.kill(launch.rank_pids()[1], signal.SIGKILL)
    killed = time.monotonic()
    assert launch.finish(timeout=60) != 0
    assert time.monotonic() - killed < 60
    text = launch.output()
    assert "another rank of this launch stopped or lost its connection" in text, text
    data = manifest(run)
    assert data["finished"] == "failed" and len(data["epochs"]) >= 1
    assert (run / data["weights_file"]).is_file() and (run / data["checkpoint_file"]).is_file()


def test_a_stop_to_the_launcher_stops_every_rank_with_the_checkpoint_intact(folders, tmp_path, launches):
    run = tmp_path / "run"
    launch = Launch(tmp_path, full_run_args(*folders, run))
    launches.append(launch)
    launch.wait_for_line("epoch 1/200")
    pids = launch.rank_pids()
    launch.process.send_signal(signal.SIGTERM)
    launch.finish(timeout=60)
    assert "stopped: stopped in epoch" in launch.output(), launch.output()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())  # every rank has ended
    data = manifest(run)
    assert data["finished"] == "stopped" and 1 <= len(data["epochs"]) < 200
    assert (run / data["checkpoint_file"]).is_file()
    # and the run resumes in one process, from the checkpoint the ranks left
    assert main(["train", str(folders[0]), str(folders[1]), "-o", str(run), "--resume",
                 "--epochs", str(len(data["epochs"]) + 1), "--threads", "1"]) == 0
    assert manifest(run)["finished"] == "completed"


# --- the plumbing, in one process --------------------------------------------------------------


@pytest.mark.parametrize("n, batch, world", [(33, 8, 2), (20, 7, 2), (10, 5, 3), (9, 9, 4)])
def test_the_ranks_shares_make_up_every_batch(n, batch, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    parts = [batch_slices(order, batch, world, rank) for rank in range(world)]
    sizes = parts[0][1]
    assert all(p[1] == sizes for p in parts)  # every rank knows every share
    for step, step_sizes in enumerate(sizes):
        starts = [sum(s[rank] for s in sizes[:step]) for rank in range(world)]
        rebuilt = [i for rank in range(world) for i in parts[rank][0][starts[rank] : starts[rank] + step_sizes[rank]]]
        assert rebuilt == order[step * batch : (step + 1) * batch]
        assert max(step_sizes) - min(step_sizes) <= 1
        # DDP averages the ranks' weighted mean losses: every image then counts 1 / batch, as in one process
        for rank in (r for r in range(world) if step_sizes[r]):  # training drops a batch without a share for all
            weight = loss_weights(sizes, rank)[step]
            assert weight / (world * step_sizes[rank]) == pytest.approx(1 / sum(step_sizes))


def test_one_process_is_a_group_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert launch_env() is None
    group = Group()
    assert not group.distributed and group.is_main
    assert group.sum([1.5, 2]) == [1.5, 2.0] and group.any(True, False) == (True, False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    env = launch_env()
    assert env is not None and (env.rank, env.world_size, env.local_rank, env.local_world_size) == (1, 4, 1, 2)
