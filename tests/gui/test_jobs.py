"""The model lease: jobs that read or write the live model take turns, on their own threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_main_window import LOAD_MS, TINY, load, open_folder

from headswap_gui.core import training
from headswap_gui.gui.jobs import ModelLease, leased
from headswap_gui.gui.main_window import MainWindow
from headswap_gui.gui.worker import running_runners


def test_a_job_stopped_while_it_waits_never_touches_the_model():
    lease, stop = ModelLease(), threading.Event()
    touched: list[str] = []

    def factory(stop_flag):
        touched.append("model")
        yield "event"

    with lease.held("train"):
        job = leased(lease, "predict", factory)(stop)
        waiting = threading.Thread(target=lambda: touched.extend(list(job)))
        waiting.start()
        stop.set()
        waiting.join(timeout=10)
    assert touched == [] and lease.history() == [("acquired", "train"), ("released", "train")]


def test_jobs_take_turns_in_order():
    lease = ModelLease()
    first_inside, release_first = threading.Event(), threading.Event()
    order: list[str] = []

    def first(stop):
        order.append("first in")
        first_inside.set()
        assert release_first.wait(timeout=10)
        order.append("first out")
        yield 1

    def second(stop):
        order.append("second in")
        yield 2

    a = threading.Thread(target=lambda: list(leased(lease, "a", first)(threading.Event())))
    b = threading.Thread(target=lambda: list(leased(lease, "b", second)(threading.Event())))
    a.start()
    assert first_inside.wait(timeout=10)
    b.start()
    release_first.set()
    a.join(timeout=10)
    b.join(timeout=10)
    assert order == ["first in", "first out", "second in"]
    assert lease.holder is None


@pytest.fixture
def many_images(tmp_path) -> list[str]:
    paths = []
    rng = np.random.default_rng(1)
    for i in range(96):
        path = tmp_path / "try" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    root = tmp_path / "colours"
    for label, colour in (("cats", (200, 40, 40)), ("dogs", (40, 40, 200))):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (24, 24), colour).save(root / label / f"{i}.png")
    return root


def _predictions_under_way(qtbot, window: MainWindow, images: list[str]) -> None:
    window.try_panel.add_images(images)
    qtbot.waitUntil(lambda: window.model_lease.holder == "predict", timeout=LOAD_MS)


def _turns(history: list[tuple[str, str]], job: str) -> list[tuple[str, str]]:
    """The lease history from the predictions' first turn to ``job``'s first turn."""
    start = history.index(("acquired", "predict"))
    end = history.index(("acquired", job))
    return history[start : end + 1]


def test_predictions_in_flight_end_before_training_touches_the_model(qtbot, window, colour_folder, many_images):
    load(qtbot, window, TINY)
    open_folder(qtbot, window, colour_folder)
    _predictions_under_way(qtbot, window, many_images)
    config = training.TrainConfig(epochs=1, batch_size=2, image_size=32, device="cpu", val_fraction=0.34)
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS) as finished:
        assert window.start_training(config)
    assert finished.args[0].reason == "completed"
    turns = _turns(window.model_lease.history(), "train")
    assert turns[-2:] == [("released", "predict"), ("acquired", "train")]  # never both at once
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)


def test_export_waits_for_predictions(qtbot, window, many_images, tmp_path):
    load(qtbot, window, TINY)
    _predictions_under_way(qtbot, window, many_images)
    assert window.export_model(("torchscript", str(tmp_path / "m.pt")))
    qtbot.waitUntil(lambda: not window.jobs.runners()["export"].is_running(), timeout=LOAD_MS)
    turns = _turns(window.model_lease.history(), "export")
    assert turns[-2:] == [("released", "predict"), ("acquired", "export")]
    assert (tmp_path / "m.pt").is_file()
    qtbot.waitUntil(lambda: not window.try_panel.is_busy(), timeout=LOAD_MS)


def test_weight_statistics_wait_for_a_free_model(qtbot, window):
    load(qtbot, window, TINY)
    assert window.model_panel.select_layer("classifier")
    with window.model_lease.held("train"):
        busy = window.model_panel.compute_statistics()
    assert "shown when the model is free (a job is using it: train)" in busy
    free = window.model_panel.compute_statistics()
    assert "<b>weight</b>" in free and "mean" in free


def test_the_windows_seed_trains_the_same_weights_as_the_cli(qtbot, window, colour_folder, tmp_path):
    """Same settings, same seed: the window's run and `headswap train --seed` end bit-identical."""
    import json

    import torch
    from safetensors.torch import load_file

    from headswap_gui.cli import main
    from headswap_gui.core.runs import save_model_folder
    from headswap_gui.core.sources import load_model

    base = save_model_folder(tmp_path / "base", load_model(TINY))  # one backbone for both (timm inits randomly)
    load(qtbot, window, str(base))
    open_folder(qtbot, window, colour_folder)
    config = training.TrainConfig(epochs=2, batch_size=2, lr=0.01, image_size=32, device="cpu", val_fraction=0.34,
                                  seed=7, cpu_threads=1, freeze="full", augment="light")
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS) as finished:
        assert window.start_training(config)
    window_run = Path(finished.args[0].run_dir)
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)
    cli_run = tmp_path / "cli-run"
    assert main(["train", str(base), str(colour_folder), "-o", str(cli_run), "--epochs", "2", "--batch-size", "2",
                 "--lr", "0.01", "--image-size", "32", "--device", "cpu", "--val-fraction", "0.34", "--seed", "7",
                 "--threads", "1", "--freeze", "full", "--augment", "light"]) == 0

    def weights(run: Path) -> dict:
        return load_file(str(run / json.loads((run / "headswap.json").read_text())["weights_file"]))

    a, b = weights(window_run), weights(cli_run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loads_never_overlap_and_the_last_request_wins(qtbot, window):
    starts: list[int] = []

    def on_started(key: str) -> None:
        if key == "load":  # the previous load has ended before the next one starts
            starts.append(sum(r.objectName() == "loadRunner" for r in running_runners()))

    window.jobs.jobStarted.connect(on_started)
    for source in ("torchvision:resnet18", "timm:test_vit", TINY):
        assert window.load_model(source)
    with qtbot.waitSignal(window.loads.loadEnded, timeout=LOAD_MS):
        pass
    assert window.controller.loaded.source == TINY
    assert starts == [1, 1]  # the second request was replaced by the third while it waited


def test_closing_asks_every_job_to_stop_before_waiting_for_any(qtbot, window):
    stops: dict[str, threading.Event] = {}
    both_started = threading.Barrier(3)
    seen_at_exit: dict[str, bool] = {}

    def job(name: str, other: str):
        def factory(stop):
            stops[name] = stop
            both_started.wait(timeout=10)
            while not stop.wait(0.01):
                yield name
            seen_at_exit[name] = stops[other].is_set()  # the other job was told before anyone waited

        return factory

    window.jobs.start("first", job("first", "second"), stop_grace_s=0.0)
    window.jobs.start("second", job("second", "first"), stop_grace_s=0.0)
    both_started.wait(timeout=10)
    assert window.jobs.stop_all(10_000)
    assert seen_at_exit == {"first": True, "second": True}
    assert not running_runners()
