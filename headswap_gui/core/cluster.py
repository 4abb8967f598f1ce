"""A folder that runs the window's training on a cluster: the config file, a ``torchrun``
script and a Slurm ``sbatch`` script.

Both scripts launch the unchanged ``headswap train --config FILE`` under PyTorch's own
launcher (``torchrun``; see :mod:`distributed` for what the engine does there), so a job
trains exactly the run the file describes, on as many processes as it is given: the batch
size in the file is the batch of the whole job, shared by its processes.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic import write_atomically
from .errors import HeadswapError
from .run_spec import TrainSpec, write_train_spec

CONFIG_FILE = "headswap-train.json"
TORCHRUN_SCRIPT = "run-torchrun.sh"
SBATCH_SCRIPT = "headswap.sbatch"
RDZV_PORT = 29500


@dataclass(frozen=True)
class ClusterJobInfo:
    """What :func:`write_cluster_job` wrote, and the command that runs it on one machine."""

    config_file: Path
    torchrun_script: Path
    sbatch_script: Path
    command: str  # torchrun on this machine's GPUs, ready to paste


def write_cluster_job(
    folder: str | os.PathLike[str], spec: TrainSpec, *, nodes: int = 1, gpus_per_node: int = 1,
) -> ClusterJobInfo:
    """Write the three files into ``folder`` (created if needed). A spec without an output
    trains into ``folder/run``, beside the files that made it."""
    if spec.source is None or spec.data is None:
        raise HeadswapError("a cluster job needs a model source and an image folder")
    if nodes < 1 or gpus_per_node < 1:
        raise HeadswapError(f"a cluster job needs at least one node and one GPU per node, not {nodes} × {gpus_per_node}")
    target = Path(folder).absolute()
    if spec.output is None:
        spec = replace(spec, output=str(target / "run"))
    config = write_train_spec(target / CONFIG_FILE, spec)
    train = f'"$(command -v headswap)" train --config {shlex.quote(str(config))}'
    command = f"torchrun --standalone --nproc_per_node {gpus_per_node} {train}"
    torchrun = target / TORCHRUN_SCRIPT
    _write_script(torchrun, f"""#!/bin/sh
# The run in {CONFIG_FILE}, trained by torchrun on this machine's GPUs:
#     sh {TORCHRUN_SCRIPT}
# On several machines, start it on each with the same rendezvous address (the first machine):
#     NNODES={max(nodes, 2)} RDZV_ENDPOINT=first-host:{RDZV_PORT} sh {TORCHRUN_SCRIPT}
# The batch size in the config is the whole job's; each process takes its share of it.
set -e
if [ "${{NNODES:-1}}" = 1 ] && [ -z "${{RDZV_ENDPOINT:-}}" ]; then
    exec torchrun --standalone --nproc_per_node "${{NPROC_PER_NODE:-{gpus_per_node}}}" {train}
fi
exec torchrun --nnodes "${{NNODES}}" --nproc_per_node "${{NPROC_PER_NODE:-{gpus_per_node}}}" \\
    --rdzv-backend c10d --rdzv-endpoint "${{RDZV_ENDPOINT}}" --rdzv-id "${{RDZV_ID:-headswap}}" \\
    {train}
""")
    sbatch = target / SBATCH_SCRIPT
    _write_script(sbatch, f"""#!/bin/bash
# The run in {CONFIG_FILE} as a Slurm job; adjust the lines below to your cluster, then:
#     sbatch {shlex.quote(str(sbatch))}
#SBATCH --job-name=headswap
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --cpus-per-task={8 * gpus_per_node}
#SBATCH --time=04:00:00
#SBATCH --output={shlex.quote(str(target))}/slurm-%j.out
set -euo pipefail
# One torchrun per node (srun starts it on every node); they meet at the first node.
first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node {gpus_per_node} \\
    --rdzv-backend c10d --rdzv-endpoint "$first_node:{RDZV_PORT}" --rdzv-id "$SLURM_JOB_ID" \\
    {train}
""")
    return ClusterJobInfo(config, torchrun, sbatch, command)


def _write_script(path: Path, text: str) -> None:
    write_atomically(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
    path.chmod(0o755)
