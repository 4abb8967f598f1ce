"""Where training runs: device selection, the devices the window offers, CPU threads, AMP.

Training prefers a CUDA GPU, then Apple's MPS, then the CPU. On the CPU it leaves one core
free, so the window stays responsive while a model trains in its worker thread. Mixed
precision and channels-last memory layout are used on CUDA only: on other devices they are
slower or unsupported, and fp32 is the safe default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
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


_threads_lock = threading.Lock()
_threads_holders = 0  # jobs inside cpu_threads() now
_threads_count = 0  # the count they run with
_threads_before: int | None = None  # the count before the first of them came in


@contextmanager
def cpu_threads(device: torch.device, count: int | None = None) -> Iterator[None]:
    """A CPU job's claim on torch's intra-op thread count (``count``, default
    :func:`training_threads`) for the block, made on the job's own thread; elsewhere than
    the CPU nothing changes.

    ``torch.set_num_threads`` acts on the calling thread's OpenMP pool, but also on MKL and
    on the default every thread started later picks up: state of the whole process. So it is
    never changed under a running job: the first job to come in sets it, a job that comes in
    while another holds it takes the same count on its thread, and only the last one out
    puts back the count from before. (The window runs one such job at a time under its model
    lease; this keeps it true anywhere else.)
    """
    global _threads_holders, _threads_count, _threads_before
    if device.type != "cpu":
        yield
        return
    with _threads_lock:
        if _threads_holders == 0:
            _threads_before, _threads_count = torch.get_num_threads(), count or training_threads()
        _threads_holders += 1
        torch.set_num_threads(_threads_count)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_holders -= 1
            if _threads_holders == 0 and _threads_before is not None:
                torch.set_num_threads(_threads_before)
                _threads_before = None


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """One intra-op thread for a block of many tiny operations, where splitting each over
    threads costs more than it saves; only when the caller's job is the one job holding
    :func:`cpu_threads` (or none is), so no other job's count changes under it."""
    with _threads_lock:
        alone = _threads_holders <= 1
        previous = torch.get_num_threads()
        if alone:
            torch.set_num_threads(1)
    try:
        yield
    finally:
        if alone:
            with _threads_lock:
                torch.set_num_threads(previous)


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


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (Intel AMX), where oneDNN runs a
    convolution net's forward pass in bf16 about 1.8× faster than in fp32 (the demo at
    128 px, one thread: 4.1 against 7.4 ms per image). Without them bf16 is emulated, and slower."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe())


def feature_pass_dtype(precision: str, device: torch.device, *, native_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of a forward pass through a frozen backbone that only produces
    features (the feature cache, the label check, the map): the training dtype, and — under
    ``auto`` or ``bf16`` — bf16 on a CPU with bf16 matrix units (``native_bf16``; None: ask
    :func:`cpu_has_bf16_matrix_units`). No gradient flows through it, and the features are
    kept in fp32, so only the last bits of what the head sees change."""
    dtype = autocast_dtype(precision, device)
    if dtype is not None or device.type != "cpu" or precision not in ("auto", "bf16"):
        return dtype
    native = cpu_has_bf16_matrix_units() if native_bf16 is None else native_bf16
    return torch.bfloat16 if native else None


@dataclass(frozen=True)
class TrainingPrecision:
    """How a run computes on its device: the autocast dtype of its steps (None: fp32), that
    of its feature pass (see :func:`feature_pass_dtype`), channels-last layout, and a note
    when the asked-for precision is not available there."""

    autocast_dtype: torch.dtype | None
    channels_last: bool
    note: str | None = None
    features_dtype: torch.dtype | None = None


def training_precision(
    precision: str, channels_last: bool | None, device: torch.device, *, native_bf16: bool | None = None,
) -> TrainingPrecision:
    """``precision`` and ``channels_last`` (None: where it helps) as ``device`` can run them.

    Channels-last speeds convolutions up on CUDA and on CPU (oneDNN): resnet18 training steps
    0.64 → 0.56 s, the demo's forward 0.28 → 0.18 s per 64 images on one CPU thread.
    """
    dtype = autocast_dtype(precision, device)
    note = None
    if precision in ("bf16", "fp16") and dtype is None:
        note = f"mixed precision trains on CUDA only; training in fp32 on {device}"
    supported = device.type in ("cuda", "cpu")
    layout = supported if channels_last is None else bool(channels_last and supported)
    features = feature_pass_dtype(precision, device, native_bf16=native_bf16)
    return TrainingPrecision(dtype, layout, note, features)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says a device, or the host, ran out of memory. CUDA and XPU raise the
    typed ``torch.OutOfMemoryError``, the host ``MemoryError``; Apple's MPS allocator raises a
    plain RuntimeError whose first words are the only sign, so for that one case the text is
    read, here and nowhere else."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return type(error) is RuntimeError and str(error).startswith(_MPS_OUT_OF_MEMORY)


_MPS_OUT_OF_MEMORY = "MPS backend out of memory"  # MPSAllocator's TORCH_CHECK text


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
