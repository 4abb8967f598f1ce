"""Training past one process: what ``torchrun`` launched, and the few collectives a run needs.

``torchrun --nproc_per_node N headswap train ...`` starts N copies of the same command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. The engine
reads them here (:func:`launch_env`), joins the process group (:func:`join`: NCCL on CUDA,
gloo otherwise) and from then on talks to the other ranks only through :class:`Group`, which
is a do-nothing stand-in in a single process, so the training code has no second path.

What has to agree across ranks agrees through a collective, never through timing:

* every global batch of the single-process order is split across the ranks
  (:func:`batch_slices`), so the ranks together take exactly the single-process steps;
* the figures a run reports are summed over the ranks in rank order on every rank
  (:meth:`Group.sum`), or taken from rank 0 (:meth:`Group.from_main`), so every rank makes the
  same decisions (best epoch, early stop) from the same numbers;
* a stop request, or a loss that is no longer finite on any rank, is agreed after each step
  (:class:`AgreedStop`), so all ranks leave a loop at the same step.

Collectives time out (:data:`TIMEOUT_ENV`, default :data:`DEFAULT_TIMEOUT_SECONDS`), so a rank
that hangs makes the others fail with a message instead of waiting forever; a rank that dies
closes its connections and the others fail at their next collective.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from .errors import DistributedError
from .tracing import call_model

TIMEOUT_ENV = "HEADSWAP_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 600.0
"""Long enough for rank 0 to write a large checkpoint while the others wait at the next
step; short enough that a hung rank does not hold a cluster allocation for long."""

_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process stands in a ``torchrun`` launch."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def launch_env() -> LaunchEnv | None:
    """The launch this process belongs to, from the variables ``torchrun`` sets; ``None`` in a
    process started any other way (the window, a plain ``headswap train``)."""
    if not all(os.environ.get(name) for name in _LAUNCH_VARIABLES):
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE") or world)
    except ValueError as error:
        raise DistributedError(f"the torchrun variables are not numbers ({error})") from error
    return LaunchEnv(rank, world, local_rank, local_world)


def is_main_process() -> bool:
    """Whether this process prints and writes: rank 0, or a process not launched by torchrun.
    Usable before any group exists (the CLI decides what to print with it)."""
    env = launch_env()
    return env is None or env.rank == 0


def cores_per_process(cores: int) -> int:
    """CPU threads for one rank when ``cores`` are shared by the ranks of this node."""
    env = launch_env()
    return max(1, cores // env.local_world_size) if env is not None else cores


def collective_timeout() -> float:
    """Seconds a collective waits for the other ranks (:data:`TIMEOUT_ENV` overrides it)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_SECONDS
    except ValueError as error:
        raise DistributedError(f"{TIMEOUT_ENV} must be a number of seconds, not {text!r}") from error
    if not math.isfinite(seconds) or seconds <= 0:
        raise DistributedError(f"{TIMEOUT_ENV} must be a positive number of seconds, not {text!r}")
    return seconds


class Group:
    """The ranks of this run. The default one is a single process: every collective returns
    its input, so code written against a :class:`Group` runs unchanged without torchrun."""

    def __init__(
        self, rank: int = 0, world_size: int = 1, backend: str | None = None, device: torch.device | None = None,
        owns: bool = False,
    ) -> None:
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.device = device or torch.device("cpu")  # where collective tensors live (NCCL: the rank's GPU)
        self._owns = owns

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the group if :func:`join` created it."""
        if self._owns and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self._owns = False

    # -- collectives ----------------------------------------------------------------------

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the ranks, added up in rank order on every rank, so every
        rank gets bit-identical sums (an all-reduce may add in another order per rank)."""
        if not self.distributed:
            return [float(v) for v in values]
        mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        torch.distributed.all_gather(gathered, mine)
        total = gathered[0].clone()
        for part in gathered[1:]:
            total += part
        return total.tolist()

    def from_main(self, values: Sequence[float]) -> list[float]:
        """Rank 0's values, on every rank (for figures that every rank computed alike)."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(tensor, src=0)
        return tensor.tolist()

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag OR-ed over the ranks, in one collective."""
        if not self.distributed:
            return tuple(bool(f) for f in flags)
        tensor = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return tuple(bool(v) for v in tensor.tolist())

    def broadcast_module(self, module: nn.Module, *, buffers_only: bool = False) -> None:
        """Give every rank rank 0's parameters (unless ``buffers_only``) and buffers, e.g.
        BatchNorm statistics that each rank updated on its own images."""
        if not self.distributed:
            return
        tensors = list(module.buffers()) if buffers_only else list(module.parameters()) + list(module.buffers())
        with torch.no_grad():
            for tensor in tensors:
                torch.distributed.broadcast(tensor.data, src=0)

    def gather_rows(self, rows: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Concatenate every rank's ``rows`` in rank order; rank r holds ``sizes[r]`` rows
        (padded for the collective, which needs equal shapes)."""
        if not self.distributed:
            return rows
        width = max(sizes)
        padded = rows.new_zeros((width, *rows.shape[1:]))
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, padded.to(self.device))
        return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(rows.device)

    def gather_batches(
        self, local: Iterator[tuple[torch.Tensor, torch.Tensor]], sizes: Sequence[Sequence[int]],
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The global batches, from each rank's part of them: ``local`` yields this rank's
        non-empty parts in order, ``sizes[i][r]`` is rank r's share of global batch i (see
        :func:`batch_slices`). Every rank gets every global batch, in the single-process order."""
        shape: tuple[int, ...] | None = None
        for step_sizes in sizes:
            if step_sizes[self.rank]:
                rows, labels = next(local)
                shape = tuple(rows.shape[1:])
            else:  # the last global batch can leave nothing to this rank
                assert shape is not None, "the first global batch has a share for every rank"
                rows = torch.empty((0, *shape), device=self.device)
                labels = torch.empty(0, dtype=torch.int64)
            yield self.gather_rows(rows, step_sizes), self.gather_rows(labels.to(rows.device), step_sizes)

    @contextmanager
    def together(self, what: str) -> Iterator[None]:
        """Run the block on every rank and agree afterwards whether it worked everywhere: the
        rank that failed raises its own error, the others a :class:`DistributedError`, so no
        rank goes on to wait for one that has given up."""
        try:
            yield
        except BaseException:
            if self.distributed:
                self.any(True)
            raise
        if self.distributed and self.any(False)[0]:
            raise DistributedError(f"another rank could not {what}; its message above says why")


class AgreedStop:
    """A stop flag that all ranks read alike: :meth:`is_set` ORs the local flags of every rank
    (a collective), so every rank must call it at the same points, as the training loops do."""

    def __init__(self, local: threading.Event, group: Group) -> None:
        self.local, self.group = local, group

    def is_set(self) -> bool:
        return self.group.any(self.local.is_set())[0]

    def agree(self, diverged: bool) -> tuple[bool, bool]:
        """``(stop, diverged)`` over all ranks, in one collective: one rank's non-finite loss
        ends the epoch on every rank at the same step."""
        stop, diverged = self.group.any(self.local.is_set(), diverged)
        return stop, diverged


def join(device: torch.device) -> tuple[Group, torch.device]:
    """Join the process group of this torchrun launch (a single-process :class:`Group`
    without one) and the device this rank trains on: on CUDA, the GPU of its local rank."""
    env = launch_env()
    if env is None:
        return Group(device=device), device
    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {env.local_rank} needs GPU {env.local_rank}, but this node has "
                f"{torch.cuda.device_count()}; start at most that many processes per node (--nproc_per_node)"
            )
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise DistributedError(f"training under torchrun runs on CUDA GPUs or on the CPU, not on {device}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = not torch.distributed.is_initialized()
    if owns:
        options: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        try:
            torch.distributed.init_process_group(
                backend, timeout=timedelta(seconds=collective_timeout()), **options,
            )
        except (RuntimeError, ValueError) as error:
            raise DistributedError(
                f"rank {env.rank} could not join the other {env.world_size - 1} "
                f"({str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__})"
            ) from error
    group = Group(torch.distributed.get_rank(), torch.distributed.get_world_size(), backend,
                  device if backend == "nccl" else torch.device("cpu"), owns)
    return group, device


def batch_slices(
    order: Sequence[int] | torch.Tensor, batch_size: int, world_size: int, rank: int, *, drop_last: bool = False,
) -> tuple[list[int], list[list[int]]]:
    """Split every global batch of ``order`` (batches of ``batch_size``, the last one dropped
    when ``drop_last``) across the ranks, in contiguous parts that differ by at most one image.

    Returns this rank's samples, in order, and for every global batch the sizes of all ranks'
    parts. A loader over the samples with batch size ``sizes[0][rank]`` yields exactly the
    rank's parts (the last global batch is smaller, so are its parts)."""
    indices = [int(i) for i in order]
    count = len(indices) // batch_size if drop_last else math.ceil(len(indices) / batch_size)
    mine: list[int] = []
    sizes: list[list[int]] = []
    for step in range(count):
        batch = indices[step * batch_size : (step + 1) * batch_size]
        base, extra = divmod(len(batch), world_size)
        parts = [base + (1 if r < extra else 0) for r in range(world_size)]
        start = sum(parts[:rank])
        mine.extend(batch[start : start + parts[rank]])
        sizes.append(parts)
    return mine, sizes


def loss_weights(sizes: Sequence[Sequence[int]], rank: int) -> list[float]:
    """Per global batch, the factor on this rank's mean loss that makes DDP's mean of the
    ranks' gradients the gradient of the mean over the whole global batch (as one process
    computes it), however unevenly the batch was split: ``n_rank · world / n_batch``."""
    return [parts[rank] * len(parts) / sum(parts) for parts in sizes]


def describe_collective_error(error: BaseException, group: Group) -> str | None:
    """Words for an error that came from the process group (another rank died, hung or lost
    its connection); ``None`` for any other error."""
    if not group.distributed:
        return None
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    dist_error = getattr(torch.distributed, "DistError", ())
    lowered = text.lower()
    from_group = isinstance(error, dist_error) or any(
        word in lowered for word in ("gloo", "nccl", "connection closed", "connection reset")
    )
    if not from_group:
        return None
    if "timed out" in lowered or "timeout" in lowered:
        why = f"the other ranks did not answer for {collective_timeout():g} s ({TIMEOUT_ENV} sets the limit)"
    else:
        why = "another rank of this launch stopped or lost its connection"
    return f"rank {group.rank} of {group.world_size}: {why}; the last committed epoch is kept (torch said: {first})"


class _Classifier(nn.Module):
    """A model called the way :func:`tracing.call_model` calls it, as one module DDP can wrap
    (DDP forwards its arguments positionally; Hugging Face models want ``pixel_values=``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Any:
        return call_model(self.model, images)


def data_parallel(model: nn.Module, group: Group) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel`: the ranks' gradients
    are averaged in every backward. Built for the parameters that train now (rebuild it when
    the freeze changes); ``static_graph`` lets models with parameters their forward skips train
    without a search for unused parameters on every step."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [group.device] if group.device.type == "cuda" else None
    return DistributedDataParallel(_Classifier(model), device_ids=device_ids, static_graph=True)
