"""A run is never lost: one writer per folder, crash-safe commits, bounded memory, and one
sentence (exit 2) for every ordinary bad input. Real CLI runs on real PNG folders."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headswap_gui.cli import main
from headswap_gui.core import sources
from headswap_gui.core.data import CropExtremeAspect, build_transform, scan_image_folder
from headswap_gui.core.errors import DataError, NeedsTrustError, RunBusyError
from headswap_gui.core.images import load_image
from headswap_gui.core.preprocessing import Preprocessing
from headswap_gui.core.run_lock import RunLock
from headswap_gui.core.training import TrainConfig, fit

HERE = Path(__file__).parent
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
TINY = ["timm:test_efficientnet", "--image-size", "32", "--batch-size", "8", "--threads", "1"]


def write_colours(root: Path, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    return write_colours(tmp_path_factory.mktemp("colours"))


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "unexpected error" not in err, err
    return code, out, err


def train(capsys, data: Path, run: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "train", TINY[0], data, "-o", run, *TINY[1:], "--epochs", "2", *extra)


def manifest(run: Path) -> dict:
    return json.loads((run / "headswap.json").read_text())


# --- kill -9 at every write boundary ------------------------------------------------------------


def test_a_kill_at_any_write_boundary_loses_nothing(colours, tmp_path):
    """SIGKILL just before and just after every rename and deletion the run makes; after
    each, the folder loads, --resume finishes, and the history equals an uninterrupted run's."""
    report_path = tmp_path / "report.json"
    subprocess.run([sys.executable, str(HERE / "kill_driver.py"), str(colours), str(tmp_path), str(report_path)],
                   check=True, timeout=600)
    report = json.loads(report_path.read_text())
    failures = [t for t in report["trials"] if not (t["killed"] and t["loads"] and t["complete"])]
    print(f"kill points injected: {report['kill_points']} at {report['boundaries']} boundaries; "
          f"complete after resume: {report['complete']}")
    assert report["boundaries"] >= 12  # initial commit + two epochs of weights, checkpoint, manifest, metrics
    assert report["kill_points"] == 2 * report["boundaries"]
    assert not failures, failures
    reference = report["reference"]
    assert [r["epoch"] for r in reference["epochs"]] == [1, 2] and len(reference["metrics"]) == 2
    assert reference["finished"] == "completed" and not reference["leftovers"]


# --- one writer --------------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(colours, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, colours, run)[0] == 0
    with RunLock(run):  # as a training process holds it
        for argv in (
            ["train", *TINY[:1], colours, "-o", run, *TINY[1:], "--resume"],
            ["train", *TINY[:1], colours, "-o", run, *TINY[1:], "--force"],
            ["swap", "timm:test_efficientnet", "--classes", "2", "-o", run, "--force"],
            ["export", run, "--format", "torchscript", "-o", run / "model.pt"],
        ):
            code, _, err = cli(capsys, *argv)
            assert code == 2 and f"being written by process {os.getpid()}" in err, err
        # another process is refused the same way
        result = subprocess.run(
            [sys.executable, "-m", "headswap_gui.cli", "train", *TINY[:1], str(colours), "-o", str(run), *TINY[1:],
             "--resume"], capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 2 and f"process {os.getpid()}" in result.stderr
    assert manifest(run)["finished"] == "completed" and len(manifest(run)["epochs"]) == 2  # untouched


def test_two_runs_started_at_the_same_moment_cannot_both_write(colours, tmp_path):
    dataset = scan_image_folder(colours)
    config = TrainConfig(epochs=1, batch_size=8, image_size=32, device="cpu", cpu_threads=1)
    start, attempted = threading.Barrier(2), threading.Barrier(2)
    outcomes: list[str] = []

    def start_run() -> None:
        torch.manual_seed(0)
        loaded = sources.load_model("timm:test_efficientnet")
        sources.swap_head(loaded, 3)
        start.wait(timeout=60)
        try:
            events = fit(loaded, dataset, config, tmp_path / "run")
        except RunBusyError:
            outcomes.append("refused")
            attempted.wait(timeout=60)
            return
        attempted.wait(timeout=60)  # the winner holds the folder until the other one has tried
        outcomes.append(list(events)[-1].reason)

    threads = [threading.Thread(target=start_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["completed", "refused"]


def test_swap_onto_a_trained_run_needs_force_and_then_leaves_nothing_behind(colours, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, colours, run)[0] == 0
    code, _, err = cli(capsys, "swap", "timm:test_efficientnet", "--classes", "2", "-o", run)
    assert code == 2 and "already holds a training run (epoch 2 of 2, completed)" in err and "--force" in err
    assert manifest(run)["finished"] == "completed"
    assert cli(capsys, "swap", "timm:test_efficientnet", "--classes", "2", "-o", run, "--force")[0] == 0
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["headswap.json", "model.safetensors"]
    assert sources.load_model(str(run)).model.get_submodule("classifier").out_features == 2


def test_train_into_a_run_explains_resume_and_force(colours, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, colours, run)[0] == 0
    code, _, err = train(capsys, colours, run)
    assert code == 2 and "already holds a training run" in err and "--resume continues it, --force replaces it" in err
    assert train(capsys, colours, run, "--force")[0] == 0


def test_a_users_own_files_are_never_removed(colours, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"the user's own weights")
    (run / "notes.txt").write_text("mine")
    assert train(capsys, colours, run)[0] == 0
    assert (run / "model.safetensors").read_bytes() == b"the user's own weights"
    assert (run / "notes.txt").read_text() == "mine"


# --- resume ------------------------------------------------------------------------------------


def test_resume_refuses_settings_that_change_what_the_run_learns(colours, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, colours, run)[0] == 0
    for flags, expected in (
        (["--image-size", "48"], "image_size: 32 in the run, 48 now"),
        (["--freeze", "full"], "freeze: 'head' in the run, 'full' now"),
        (["--lr", "0.5"], "lr: 0.01 in the run, 0.5 now"),
    ):
        code, _, err = cli(capsys, "train", TINY[0], colours, "-o", run, "--resume", *flags)
        assert code == 2 and expected in err, err
    code, _, err = cli(capsys, "train", "torchvision:resnet18", colours, "-o", run, "--resume")
    assert code == 2 and "was trained from timm:test_efficientnet" in err
    code, _, err = cli(capsys, "train", TINY[0], colours, "-o", run, "--resume", "--head", "mlp")
    assert code == 2 and "no head options" in err
    # more epochs are fine, and the recorded settings (not the CLI defaults) are used
    code, _, err = cli(capsys, "train", TINY[0], colours, "-o", run, "--resume", "--epochs", "3")
    assert code == 0, err
    assert [r["epoch"] for r in manifest(run)["epochs"]] == [1, 2, 3]
    assert manifest(run)["training"]["image_size"] == 32 and manifest(run)["training"]["lr"] == 0.01


def test_a_run_stopped_before_its_first_epoch_restarts_in_place(colours, tmp_path, capsys):
    dataset = scan_image_folder(colours)
    config = TrainConfig(epochs=2, batch_size=8, image_size=32, device="cpu", cpu_threads=1, lr=0.01)
    stop = threading.Event()
    stop.set()
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3, class_names=dataset.class_names)
    end = list(fit(loaded, dataset, config, tmp_path / "run", stop=stop))[-1]
    assert end.reason == "stopped" and end.saved_epochs == 0
    assert sources.load_model(str(tmp_path / "run")).class_names == dataset.class_names  # the starting model
    resumed = list(fit(sources.load_model(str(tmp_path / "run")), dataset, config, tmp_path / "run", resume=True))
    assert resumed[-1].reason == "completed" and len(manifest(tmp_path / "run")["epochs"]) == 2


def test_resume_removes_stale_temp_files(colours, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, colours, run)[0] == 0
    (run / ".last-e0003.safetensors.abc123.tmp").write_bytes(b"\0" * 1000)
    (run / "last-e0007.safetensors").write_bytes(b"\0" * 1000)  # written, never committed
    assert cli(capsys, "train", TINY[0], colours, "-o", run, "--resume", "--epochs", "3")[0] == 0
    assert not (run / ".last-e0003.safetensors.abc123.tmp").exists() and not (run / "last-e0007.safetensors").exists()


def test_sigterm_stops_with_a_line_and_a_consistent_folder(colours, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "headswap_gui.cli", "train", *TINY[:1], str(colours), "-o", str(run), *TINY[1:],
         "--epochs", "200", "--threads", "1"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    for line in process.stderr:  # wait for a committed epoch, then terminate
        lines.append(line)
        if line.startswith("epoch 2/200"):
            process.send_signal(signal.SIGTERM)
            break
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received; stopping after the current step" in rest and "stopped:" in rest
    assert "Traceback" not in rest
    record = manifest(run)
    assert record["finished"] == "stopped" and len(record["epochs"]) >= 2
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# --- full and read-only disks ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1.1 MB tmpfs: room for the tiny model's starting weights, not for its first epoch."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1100k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_with_a_sentence_and_keeps_what_was_committed(colours, small_disk, capsys):
    run = small_disk / "run"
    code, _, err = train(capsys, colours, run, "--epochs", "5")
    assert code == 1
    assert "the disk is full" in err and "it still holds the starting model (no finished epoch) intact" in err
    assert "saved to" not in err  # a failure never claims it saved
    record = manifest(run)
    assert record["finished"] is None and record["epochs"] == []
    assert sources.load_model(str(run)).class_names == ("blue", "green", "red")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    # with room again, the same command line continues the run
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    code, _, err = train(capsys, colours, run, "--epochs", "5", "--resume")
    assert code == 0, err
    assert [r["epoch"] for r in manifest(run)["epochs"]] == [1, 2, 3, 4, 5]


def test_a_read_only_disk_is_refused_before_any_work(colours, small_disk, capsys):
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)]).returncode == 0
    code, _, err = train(capsys, colours, small_disk / "run")
    assert code == 2 and "cannot write to" in err and "read-only" in err


# --- memory bounds -----------------------------------------------------------------------------


def test_extreme_aspect_images_are_cropped_before_they_are_resized(tmp_path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (300_000, 1), (200, 10, 10)).save(strip)
    assert strip.stat().st_size < 2_000  # a tiny file...
    image = load_image(strip)
    assert CropExtremeAspect()(image).size == (4, 1)  # ...that never becomes a 256×76,800,000 image
    tensor = build_transform(Preprocessing(input_size=64, resize_size=73))(image)
    assert tensor.shape == (3, 64, 64)
    normal = Image.new("RGB", (40, 30))
    assert CropExtremeAspect()(normal) is normal  # ordinary images pass untouched


def test_sixteen_bit_pixels_count_double_against_the_decoding_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    folder = tmp_path / "data"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / name / "ok.png")
    Image.fromarray(np.zeros((80, 80), np.uint16)).save(folder / "a" / "deep.png")  # 6,400 px at 16 bits
    Image.fromarray(np.zeros((80, 80), np.uint8)).save(folder / "a" / "flat.png")  # 6,400 px at 8 bits
    skipped = {Path(s.path).name: s.reason for s in scan_image_folder(folder).skipped}
    assert skipped == {"deep.png": "too large (decompression bomb)"}


def test_the_cli_bounds_the_image_size_before_any_work(colours, tmp_path, capsys):
    code, _, err = train(capsys, colours, tmp_path / "run", "--image-size", "100000")
    assert code == 2 and "image_size must be between 8 and 2048" in err
    assert not (tmp_path / "run").exists()


# --- tampered folders --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(colours, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", TINY[0], str(colours), "-o", str(run), *TINY[1:], "--epochs", "1"]) == 0
    return run


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (lambda m: m["heads"][0].update(path="fc"), "names the head 'fc'"),
        (lambda m: m.update(class_names=["a", "b"]), "class_names has 2 names but the head has 3 outputs"),
        (lambda m: m["split"]["val"][0].__setitem__(0, "../../../../etc/passwd"), "points outside the image folder"),
        (lambda m: m.update(weights_file="../../elsewhere.safetensors"), "weights_file is '../../elsewhere"),
        (lambda m: m.update(num_classes="3"), "num_classes is '3'"),
        (lambda m: m["epochs"].append(dict(m["epochs"][0])), "numbers its epochs [1, 1]"),
    ],
    ids=["head-path", "class-names", "split-path", "weights-file", "num-classes", "epochs"],
)
def test_tampered_fields_are_named(finished_run, colours, tmp_path, capsys, tamper, expected):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    record = manifest(run)
    tamper(record)
    (run / "headswap.json").write_text(json.dumps(record))
    for argv in (["predict", run, colours / "red" / "0.png"], ["train", TINY[0], colours, "-o", run, "--resume"]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and expected in err, err


def test_a_damaged_manifest_is_one_sentence(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "headswap.json").write_text('{"format": "headswap-model", "form')
    code, _, err = cli(capsys, "predict", run)
    assert code == 2 and "headswap.json is damaged: it is not valid JSON" in err


# --- ordinary bad input: one sentence, exit 2 ---------------------------------------------------


def test_predict_reports_bad_files_one_by_one_and_predicts_the_rest(finished_run, colours, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.png").write_bytes((colours / "red" / "1.png").read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "empty.jpg").write_bytes(b"")
    code, out, err = cli(capsys, "predict", finished_run, folder)
    assert code == 2
    assert "good.png: " in out and "broken.png" not in out
    assert "broken.png: cannot decode the image" in err and "empty.jpg: not an image Pillow can read" in err
    assert "2 of 3 images could not be classified" in err


def test_predict_on_a_folder_without_images_says_so(finished_run, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("no images")
    code, _, err = cli(capsys, "predict", finished_run, tmp_path / "nothing")
    assert code == 2 and "holds no image files" in err


def test_nan_weights_predict_an_explanation_not_nan_percent(finished_run, colours, tmp_path, capsys):
    loaded = sources.load_model(str(finished_run))
    with torch.no_grad():
        loaded.model.get_submodule("classifier").weight.fill_(float("nan"))
    from headswap_gui.core.runs import save_model_folder

    save_model_folder(tmp_path / "nan", loaded)
    code, out, err = cli(capsys, "predict", tmp_path / "nan", colours / "red" / "0.png")
    assert code == 2 and "nan%" not in out and "not a number (NaN)" in err


def test_non_utf8_file_names_are_skipped_by_name_and_never_crash(tmp_path, capsys):
    data = write_colours(tmp_path / "data", per_class=6)
    odd = os.fsdecode(b"bad-\xff\xfe.png")
    (data / "red" / odd).write_bytes((data / "red" / "0.png").read_bytes())
    code, _, err = cli(capsys, "train", TINY[0], data, "-o", tmp_path / "run", *TINY[1:], "--epochs", "1",
                       "--show-skipped")
    assert code == 0, err
    assert "skipped" in err and "bad-\\xff\\xfe.png: file name is not valid UTF-8 (rename it)" in err
    skipped = manifest(tmp_path / "run")["skipped_files"]
    assert skipped == [{"path": str(data / "red" / "bad-\\xff\\xfe.png"), "reason": "file name is not valid UTF-8 (rename it)"}]
    code, out, _ = cli(capsys, "predict", tmp_path / "run", data / "red" / odd)
    assert code == 0 and "bad-\\xff\\xfe.png: " in out


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch-zip", "plain-pickle"])
def test_a_pickle_that_would_run_code_asks_for_trust_and_never_runs(tmp_path, capsys, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if container == "torch-zip":
        torch.save({"weights": torch.zeros(1), "x": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    with pytest.raises(NeedsTrustError, match="pickled Python objects"):
        sources.load_model(str(path))
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2 and "add --trust to load it anyway" in err
    assert not marker.exists()
    path.write_bytes(path.read_bytes()[:3 if container == "plain-pickle" else 40])  # damaged, not "needs trust"
    code, _, err = cli(capsys, "inspect", path)
    assert code == 2 and "not a readable PyTorch file" in err and "--trust" not in err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--lr", "0"], "lr must be a positive number, got 0.0"),
        (["--threads", "0"], "cpu_threads must be ≥ 1, got 0"),
    ],
)
def test_zero_settings_are_refused_not_replaced(colours, tmp_path, capsys, argv, expected):
    code, _, err = train(capsys, colours, tmp_path / "run", *argv)
    assert code == 2 and expected in err


def test_export_to_a_folder_and_a_fifo_as_model_are_sentences(finished_run, tmp_path, capsys):
    code, _, err = cli(capsys, "export", finished_run, "--format", "onnx", "-o", tmp_path)
    assert code == 2 and "is a folder; give a file name" in err
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    code, _, err = cli(capsys, "inspect", fifo)
    assert code == 2 and "not a regular file" in err


def test_a_class_folder_linked_to_another_is_refused(tmp_path):
    data = write_colours(tmp_path / "data", per_class=3)
    os.symlink(data / "red", data / "rouge")
    with pytest.raises(DataError, match="'red' and 'rouge' .* are the same folder"):
        scan_image_folder(data)


def test_a_file_linked_into_two_classes_counts_once(tmp_path):
    data = write_colours(tmp_path / "data", per_class=3)
    os.symlink(data / "red" / "0.png", data / "blue" / "also-red.png")
    info = scan_image_folder(data)
    assert info.counts == (3, 3, 3)
    assert [(Path(s.path).name, s.reason) for s in info.skipped] == [("also-red.png", "same file as in class 'red'")]


def test_a_run_stopped_in_its_first_epoch_leaves_the_starting_weights(colours, tmp_path):
    dataset = scan_image_folder(colours)
    config = TrainConfig(epochs=3, batch_size=8, image_size=32, device="cpu", cpu_threads=1, freeze="full",
                         max_step_events_per_second=1e9)
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3, class_names=dataset.class_names, seed=0)
    start = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    stop = threading.Event()
    events = []
    for event in fit(loaded, dataset, config, tmp_path / "run", stop=stop):
        events.append(event)
        if type(event).__name__ == "StepMetrics":
            stop.set()  # after one optimizer step has changed the weights
    assert events[-1].reason == "stopped" and "the model is as it was before the run" in events[-1].message
    after = loaded.model.state_dict()
    assert all(torch.equal(start[k], after[k]) for k in start)
