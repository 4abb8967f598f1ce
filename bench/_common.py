"""Shared helpers for the benchmark scripts in this folder (not a benchmark itself).

The scripts are run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
import this module as ``_common``. Everything here is plain Python; no timing happens here.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere without installing the package
    sys.path.insert(0, str(ROOT))

DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "headswap-bench" / "demo-digits"


# --- data ------------------------------------------------------------------------------------


def digits(directory: str | os.PathLike[str] | None = None) -> Any:
    """The digits demo folder (written once with ``demo_data.write_digits_dataset``), scanned."""
    from headswap_gui.core.demo_data import write_digits_dataset

    return write_digits_dataset(Path(directory) if directory else DEFAULT_DATA_DIR)


def subset(info: Any, per_class: int | None) -> Any:
    """The first ``per_class`` images of every class (in scan order), as a ``DatasetInfo``
    that the engine and the baseline both split with ``split_samples``. ``None``: all."""
    if per_class is None:
        return info
    taken: dict[int, int] = {}
    samples = []
    for sample in info.samples:
        if taken.get(sample.label, 0) < per_class:
            taken[sample.label] = taken.get(sample.label, 0) + 1
            samples.append(sample)
    return replace(info, samples=tuple(samples), predefined_split=None)


# --- statistics and tables ---------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min–max`` of the values, for the tables."""
    values = [v for v in values if v == v]
    if not values:
        return "-"
    return f"{min(values):.3g}–{max(values):.3g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, first column left-aligned, the rest right-aligned (valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width) for column, (cell, width) in enumerate(zip(row, widths))
        ) + " |")
        if index == 0:
            lines.append("|" + "|".join(
                "-" * (width + 2) if column == 0 else "-" * (width + 1) + ":" for column, width in enumerate(widths)
            ) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


# --- machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: str = "cpu") -> str:
    import torch

    from headswap_gui.core.devices import cpu_cores, training_threads

    parts = [
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"CPU {cpu_model()} ({cpu_cores()} cores usable, fit trains with {training_threads()} thread(s))",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    try:
        load = os.getloadavg()
        parts.append(f"load average at start {load[0]:.2f}")
    except OSError:
        pass
    return "; ".join(parts)


def header(title: str, command: Sequence[str] | None = None, device: str = "cpu") -> None:
    print(f"== {title}")
    print(f"command: python {' '.join(command if command is not None else sys.argv)}")
    print(f"date:    {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"machine: {machine_line(device)}")
    print(flush=True)


# --- memory ----------------------------------------------------------------------------------


def rss_bytes() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in bytes: psutil where installed, else
    ``/proc/self/status`` (VmRSS, VmHWM)."""
    try:
        import psutil  # type: ignore[import-not-found]

        info = psutil.Process().memory_info()
        peak = getattr(info, "peak_wset", None)  # Windows
        if peak is None:
            peak = _proc_status().get("VmHWM", info.rss)
        return int(info.rss), int(peak)
    except ImportError:
        status = _proc_status()
        return status.get("VmRSS", 0), status.get("VmHWM", 0)


def _proc_status() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024  # kB
    except OSError:
        pass
    return values


def mib(n: float) -> float:
    return n / 2**20


# --- timing ------------------------------------------------------------------------------------


def sync(device: str) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def warm_imports() -> None:
    """Import what both sides of a comparison use, before anything is timed."""
    import timm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import headswap_gui.core.sources
    import headswap_gui.core.training  # noqa: F401


def tutorial_train_epoch(model: Any, loader: Any, optimizer: Any, criterion: Any, device: Any, *,
                         pin: bool, channels_last: bool, amp_dtype: Any) -> tuple[float, int, int]:
    """One epoch of the torchvision fine-tuning tutorial's training loop (the baseline both
    training benchmarks time): returns the summed loss, the correct predictions and the images seen."""
    import torch

    running_loss, running_corrects, seen = 0.0, 0, 0
    for inputs, labels in loader:
        inputs = inputs.to(device, non_blocking=pin)
        labels = labels.to(device, non_blocking=pin)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(inputs)
            loss = criterion(outputs, labels)
        _, preds = torch.max(outputs, 1)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * inputs.size(0)
        running_corrects += int(torch.sum(preds == labels.data))
        seen += inputs.size(0)
    return running_loss, running_corrects, seen


def tutorial_accuracy(model: Any, loader: Any, device: Any, *, pin: bool, channels_last: bool, amp_dtype: Any) -> float:
    """The tutorial loop's validation pass: top-1 accuracy with the model in eval mode."""
    import torch

    model.eval()
    corrects = total = 0
    with torch.no_grad():
        for inputs, labels in loader:
            inputs = inputs.to(device, non_blocking=pin)
            labels = labels.to(device, non_blocking=pin)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = model(inputs)
            corrects += int((outputs.argmax(1) == labels).sum())
            total += labels.size(0)
    return corrects / total


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    """Run the real Qt event loop (``QEventLoop.exec``, as ``app.exec`` would) until
    ``predicate()`` holds; a 20 ms timer checks it. Exits the benchmark on time-out."""
    from PySide6.QtCore import QEventLoop, QTimer

    if predicate():
        return
    deadline = time.perf_counter() + timeout_s
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(20)
    check.timeout.connect(lambda: loop.quit() if predicate() or time.perf_counter() > deadline else None)
    check.start()
    loop.exec()
    check.stop()
    if not predicate():
        raise SystemExit(f"timed out waiting for {what}")


def wait_for_signal(signal: Any, timeout_s: float, what: str) -> tuple[Any, ...]:
    """Run the real Qt event loop until ``signal`` is emitted and return its arguments. Nothing
    polls meanwhile, as in ``app.exec``: :func:`wait_until`'s 20 ms check is GUI-thread Python
    that a training thread has to share the GIL with (about 5 ms a second of GUI CPU here).
    Exits the benchmark on time-out."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    received: list[tuple[Any, ...]] = []

    def on_signal(*args: Any) -> None:
        received.append(args)
        loop.quit()

    signal.connect(on_signal)
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    deadline.start(int(timeout_s * 1000))
    loop.exec()
    deadline.stop()
    signal.disconnect(on_signal)
    if not received:
        raise SystemExit(f"timed out waiting for {what}")
    return received[0]
