"""Where training runs: device selection, the devices the window offers, CPU threads, AMP.

Training prefers a CUDA GPU, then Apple's MPS, then the CPU. On the CPU it leaves one core
free, so the window stays responsive while a model trains in its worker thread. Mixed
precision and channels-last memory layout are used on CUDA only: on other devices they are
slower or unsupported, and fp32 is the safe default.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from .errors import HeadswapError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # and "cuda:N"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class DeviceInfo:
    """One device the user can train on, for the window's device menu."""

    name: str  # what TrainConfig.device takes: "cpu", "cuda:0", "mps"
    label: str  # for people: "NVIDIA H200 (139.8 GiB, 120.1 GiB free)"
    total_memory: int | None = None  # bytes; None for the CPU and MPS
    free_memory: int | None = None


def cpu_cores() -> int:
    """Cores this process may run on (respects CPU affinity / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def training_threads(cores: int | None = None) -> int:
    """Intra-op threads for training on the CPU: all cores but one, which the GUI keeps."""
    cores = cpu_cores() if cores is None else cores
    return max(1, cores - 1)


def list_devices() -> list[DeviceInfo]:
    """Every device available here, best first: CUDA GPUs (with memory), MPS, the CPU."""
    devices: list[DeviceInfo] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            total, free = int(props.total_memory), None
            try:
                free, total = (int(v) for v in torch.cuda.mem_get_info(index))
            except RuntimeError:  # e.g. the device is busy in exclusive mode
                pass
            memory = f"{total / 2**30:.1f} GiB" + (f", {free / 2**30:.1f} GiB free" if free is not None else "")
            devices.append(DeviceInfo(f"cuda:{index}", f"{props.name} ({memory})", total, free))
    if _mps_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)"))
    devices.append(DeviceInfo("cpu", f"CPU ({cpu_cores()} cores, training uses {training_threads()})"))
    return devices


def resolve_device(name: str = "auto") -> torch.device:
    """The ``torch.device`` for a ``TrainConfig.device`` value; raises :class:`HeadswapError`
    for a device that is not here, saying which ones are."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise HeadswapError(f"the device 'mps' is not available here; {_available_hint()}")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise HeadswapError(f"no CUDA GPU is available here; {_available_hint()}")
        index_text = name.partition(":")[2] or str(torch.cuda.current_device())
        if not index_text.isdigit() or int(index_text) >= torch.cuda.device_count():
            raise HeadswapError(f"there is no GPU {name!r}; {_available_hint()}")
        return torch.device("cuda", int(index_text))
    raise HeadswapError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32.

    Mixed precision runs only on CUDA. ``auto`` picks bf16 where the GPU supports it and
    fp32 otherwise (fp16 needs loss scaling and can overflow, so it is never chosen for you).
    """
    if precision not in PRECISIONS:
        raise HeadswapError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    with torch.cuda.device(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return str(device)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _available_hint() -> str:
    return "available: " + ", ".join(d.name for d in list_devices())


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Mixed precision for ``device`` when ``dtype`` is set (see :func:`autocast_dtype`), else nothing."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def to_device_batch(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """An input batch on ``device``, in channels-last layout for image batches when asked,
    matching a model moved to that layout."""
    images = images.to(device, non_blocking=True)
    if channels_last and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images
