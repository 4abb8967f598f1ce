"""What trains: freeze policies, parameter groups, the optimizer and the learning-rate schedule.

Policies (``TrainConfig.freeze``):

- ``head`` — only the new head trains. The whole backbone runs in eval mode during training
  (BatchNorm statistics frozen, dropout off), so its outputs are exactly what the feature
  cache computes once.
- ``gradual`` — ``head`` for ``unfreeze_after`` epochs, then everything trains, the backbone at
  ``lr × backbone_lr_factor``. The optimizer and the schedule are rebuilt at that point.
- ``last-k`` — the head and the last ``k`` backbone blocks (see :func:`backbone_blocks`)
  train; frozen blocks with weights run in eval mode.
- ``full`` — everything trains, the backbone at ``lr × backbone_lr_factor``.

Whatever the policy, the optimizer is built from exactly the parameters that have
``requires_grad`` at that moment (:func:`trainable_parameters_match_optimizer` checks it).
Biases and normalisation weights (1-D tensors) get no weight decay, nor do the parameters a
timm model's own ``no_weight_decay()`` names (a ViT's ``pos_embed`` and ``cls_token``).
The learning rate follows a ``torch.optim.lr_scheduler.LambdaLR`` (:func:`build_schedule`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .errors import HeadswapError

FREEZE_POLICIES = ("head", "gradual", "last-k", "full")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
SGD_MOMENTUM = 0.9
Phase = Literal["head", "last-k", "full"]  # what trains right now


# --- blocks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneBlock:
    """One unfreezable unit of the backbone, in forward order."""

    name: str  # module path, or "a + b" when leading/trailing layers were merged in
    parameter_names: tuple[str, ...]


def in_paths(name: str, paths: Iterable[str]) -> bool:
    """Whether the dotted ``name`` is one of ``paths`` or lies inside one."""
    return any(name == path or name.startswith(path + ".") for path in paths)


def backbone_blocks(model: nn.Module, head_paths: Iterable[str]) -> list[BackboneBlock]:
    """The backbone's blocks, first to last.

    A timm model says what its blocks are: ``group_matcher(coarse=True)`` is the grouping timm
    itself uses for layer-wise learning-rate decay, so it is preferred wherever the model, or
    a module inside the user's container, has one and it splits the backbone into at least
    two blocks (:func:`_timm_blocks`). Every other model gets the structural heuristic of
    :func:`_structural_blocks`.
    """
    heads = tuple(head_paths)
    return _timm_blocks(model, heads) or _structural_blocks(model, heads)


def _timm_blocks(model: nn.Module, heads: tuple[str, ...]) -> list[BackboneBlock] | None:
    """Blocks from timm's coarse ``group_matcher`` (a ViT: the embeddings, then each of
    ``blocks.N``, the final norm joining the last), or None without one.

    Parameters timm leaves unmatched (the neck it groups with its head: ``fc_norm``, a
    ConvNeXt's ``head.norm``) and the container's own layers join the last block, or the
    first when they are registered before every grouped parameter, as in the heuristic.
    Names are module paths, joined with " + " where a group spans several.
    """
    owner = _timm_owner(model, heads)
    if owner is None:
        return None
    from timm.models import group_parameters  # a model with a group_matcher comes from timm

    path, module = owner
    prefix = f"{path}." if path else ""
    matcher = module.group_matcher(coarse=True)
    position = {n: i for i, (n, _) in enumerate(model.named_parameters()) if not in_paths(n, heads)}
    units: list[list[str]] = []
    for _, names in sorted(group_parameters(module, matcher).items()):
        owned = [prefix + n for n in names if prefix + n in position and _timm_matches(matcher, n)]
        if owned:
            units.append(owned)
    if len(units) < 2:
        return None
    grouped = {n for unit in units for n in unit}
    first = min(position[n] for n in grouped)
    rest = [n for n in position if n not in grouped]
    leading = [n for n in rest if position[n] < first]
    trailing = [n for n in rest if position[n] > first]
    counts = Counter(a for n, _ in model.named_parameters() for a in _ancestors(n))
    blocks = [[_group_name(unit, prefix, counts), unit] for unit in units]
    if leading:
        blocks[0] = ["stem + " + blocks[0][0], leading + blocks[0][1]]
    if trailing:
        blocks[-1] = [blocks[-1][0] + " + tail", blocks[-1][1] + trailing]
    return [BackboneBlock(name, tuple(owned)) for name, owned in blocks]


def _timm_owner(model: nn.Module, heads: tuple[str, ...]) -> tuple[str, nn.Module] | None:
    """(path, module) of the top-most module with a ``group_matcher`` that holds the most
    backbone weights: the model itself when it is a timm model, else the timm model inside a
    container (an ensemble of two keeps the larger one's grouping)."""
    found: list[tuple[str, nn.Module]] = []
    for path, module in model.named_modules():
        if in_paths(path, heads) or in_paths(path, [f for f, _ in found]):
            continue
        if callable(getattr(module, "group_matcher", None)):
            if not path:
                return path, module
            found.append((path, module))

    def backbone_size(entry: tuple[str, nn.Module]) -> int:
        return sum(p.numel() for n, p in entry[1].named_parameters(prefix=entry[0]) if not in_paths(n, heads))

    found = [entry for entry in found if backbone_size(entry)]
    return max(found, key=backbone_size) if found else None


def _timm_matches(matcher: Mapping[str, Any] | Callable[[str], Any], name: str) -> bool:
    """Whether timm's ``matcher`` gives ``name`` a group of its own; what it does not match
    (ordinal ``inf`` in timm's ``group_with_matcher``) lands in one catch-all group with the
    head. A dict matcher maps group names to a regex, or to (regex, suffix) pairs."""
    if callable(matcher):
        ordinal = matcher(name)
        return math.inf not in (tuple(ordinal) if isinstance(ordinal, Iterable) else (ordinal,))
    patterns = [
        pattern
        for spec in matcher.values()
        if spec is not None
        for pattern in ([entry[0] for entry in spec] if isinstance(spec, (list, tuple)) else [spec])
    ]
    return any(re.match(pattern, name) for pattern in patterns)


def _group_name(names: list[str], prefix: str, counts: Counter[str]) -> str:
    """The top-most modules (inside the timm model at ``prefix``) whose weights all lie in the
    block ``names``, in order: ``blocks.3`` (not ``blocks.3.0`` when the stage has a single
    block); ``blocks.5 + norm``; ``cls_token + pos_embed + patch_embed``. ``counts`` holds
    how many of the model's parameters each module path contains."""
    mine = Counter(a for n in names for a in _ancestors(n))
    labels = [next((a for a in _ancestors(n) if a.startswith(prefix) and mine[a] == counts[a]), n) for n in names]
    return " + ".join(dict.fromkeys(labels))


def _ancestors(name: str) -> list[str]:
    """The module paths that contain the parameter ``name``, outermost first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _structural_blocks(model: nn.Module, heads: tuple[str, ...]) -> list[BackboneBlock]:
    """Blocks found in the module tree, for models without timm's metadata.

    A level of the module tree whose children include at least three composite modules
    (modules with weighted sub-layers) is the block level: torchvision ResNet's
    ``layer1..layer4``, torchvision EfficientNet's ``features.N``, a torchvision ViT's encoder
    layers. Above it, the search descends into the largest composite child; layers beside it
    (the stem; final convolutions and norms) join the first or the last block. Single layers
    between composites join the block before them. Weights of modules that contain a head
    (GoogLeNet's ``aux1.conv``/``aux1.fc1``) join the last block. Where a model has no
    composite modules at all (a plain ``Sequential`` of layers) each weighted layer is a
    block. Order is registration order, which is forward order for the architectures in the
    zoo.
    """
    names = {id(p): n for n, p in model.named_parameters() if not in_paths(n, heads)}
    sizes = {n: p.numel() for n, p in model.named_parameters()}

    def params_under(module: nn.Module, recurse: bool = True) -> list[str]:
        return [names[id(p)] for p in module.parameters(recurse=recurse) if id(p) in names]

    def composite(module: nn.Module) -> bool:
        return any(params_under(child) for child in module.children())

    leading: list[str] = []
    trailing: list[str] = []
    level, level_path = model, ""
    while True:
        children = []  # (path, module, parameter names) of children holding backbone weights
        for child_name, child in level.named_children():
            path = f"{level_path}.{child_name}" if level_path else child_name
            owned = params_under(child)
            if not owned:
                continue
            if any(h.startswith(path + ".") for h in heads):
                trailing += owned  # a module around a head (auxiliary classifier)
            else:
                children.append((path, child, owned))
        leading += params_under(level, recurse=False)  # e.g. a ViT's position embedding
        composites = [c for c in children if composite(c[1])]
        if composites and len(composites) < 3:
            biggest = max(composites, key=lambda c: sum(sizes[n] for n in c[2]))
            index = children.index(biggest)
            leading += [n for *_, owned in children[:index] for n in owned]
            trailing = [n for *_, owned in children[index + 1 :] for n in owned] + trailing
            level, level_path = biggest[1], biggest[0]
            continue
        units: list[list[Any]] = []  # [name, parameter names]
        stem: list[str] = []
        for path, child, owned in children:
            if not composites or composite(child):
                units.append([path, stem + owned] if stem and not units else [path, owned])
                if stem and len(units) == 1:
                    units[0][0] = "stem + " + path
                    stem = []
            elif units:
                units[-1][1] = units[-1][1] + owned
            else:
                stem += owned
        break
    if not units:
        return [BackboneBlock("backbone", tuple(leading + trailing))] if leading or trailing else []
    if leading:
        units[0] = [units[0][0] if units[0][0].startswith("stem + ") else "stem + " + units[0][0], leading + units[0][1]]
    if trailing:
        units[-1] = [units[-1][0] + " + tail", units[-1][1] + trailing]
    return [BackboneBlock(name, tuple(owned)) for name, owned in units]


# --- plans -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezePlan:
    """Which parameters train in one phase of a policy, and which modules stay in eval mode."""

    policy: str
    phase: Phase
    head_paths: tuple[str, ...]
    trainable: frozenset[str]  # parameter names with requires_grad
    eval_modules: tuple[str, ...]  # module paths kept in eval mode while training
    description: str = field(compare=False, default="")

    @property
    def backbone_frozen(self) -> bool:
        return self.phase == "head"


def initial_phase(policy: str) -> Phase:
    if policy not in FREEZE_POLICIES:
        raise HeadswapError(f"unknown freeze policy {policy!r}; use one of {', '.join(FREEZE_POLICIES)}")
    return {"head": "head", "gradual": "head", "last-k": "last-k", "full": "full"}[policy]  # type: ignore[return-value]


def plan_freeze(
    model: nn.Module, head_paths: Iterable[str], policy: str, phase: Phase | None = None, *, last_k: int = 1
) -> FreezePlan:
    """The :class:`FreezePlan` for ``policy`` in ``phase`` (its first phase by default)."""
    heads = tuple(head_paths)
    if not heads:
        raise HeadswapError("the model has no head to train")
    phase = phase or initial_phase(policy)
    all_names = [n for n, _ in model.named_parameters()]
    head_names = {n for n in all_names if in_paths(n, heads)}
    if phase == "head":
        trainable = set(head_names)
        description = "training the head only; the backbone is frozen (eval mode)"
    elif phase == "last-k":
        if last_k < 1:
            raise HeadswapError(f"last-k needs k ≥ 1 blocks, got {last_k}")
        blocks = backbone_blocks(model, heads)
        chosen = blocks[-last_k:]
        trainable = head_names | {n for block in chosen for n in block.parameter_names}
        count = f"all {len(blocks)}" if last_k >= len(blocks) else f"the last {len(chosen)} of {len(blocks)}"
        description = f"training the head and {count} backbone blocks ({', '.join(b.name for b in chosen)})"
    elif phase == "full":
        trainable = set(all_names)
        description = "training the whole model"
    else:
        raise HeadswapError(f"unknown freeze phase {phase!r}")
    return FreezePlan(policy, phase, heads, frozenset(trainable), _eval_modules(model, heads, trainable, phase), description)


def _eval_modules(model: nn.Module, heads: tuple[str, ...], trainable: set[str], phase: Phase) -> tuple[str, ...]:
    """Top-most modules that stay in eval mode while training.

    With the whole backbone frozen that is every backbone module (dropout too, so training sees
    exactly the cached features). With part of it training, only frozen modules that hold
    weights (BatchNorm statistics must not drift under frozen convolutions); parameter-free
    dropout between trainable layers keeps working.
    """
    if phase == "full":
        return ()
    found: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            path = f"{prefix}.{child_name}" if prefix else child_name
            if in_paths(path, heads):
                continue
            if any(h.startswith(path + ".") for h in heads):
                visit(child, path)
                continue
            names = [f"{path}.{n}" for n, _ in child.named_parameters()]
            if any(n in trainable for n in names):
                visit(child, path)
                continue
            has_state = bool(names) or any(True for _ in child.buffers())
            if phase == "head" or has_state:
                found.append(path)

    visit(model, "")
    return tuple(found)


def apply_freeze(model: nn.Module, plan: FreezePlan) -> None:
    """Set ``requires_grad`` on every parameter according to ``plan``."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in plan.trainable)


def set_train_mode(model: nn.Module, plan: FreezePlan) -> None:
    """``model.train()``, except the plan's frozen modules, which stay in eval mode."""
    model.train()
    for path in plan.eval_modules:
        model.get_submodule(path).eval()


# --- optimizer -------------------------------------------------------------------------------


def no_weight_decay_patterns(model: nn.Module) -> list[str]:
    """Parameters that the model's own metadata exempts from weight decay, as full names or
    wildcard patterns (``pos_embed.*``), matched the way timm's ``param_groups_weight_decay``
    matches them (fnmatch). Decaying a ViT's ``pos_embed`` and ``cls_token`` pulls the
    learned embeddings towards zero. Every module with a ``no_weight_decay()`` counts, its
    names prefixed with its path, so a timm model inside the user's container keeps them."""
    patterns: list[str] = []
    for path, module in model.named_modules():
        names = getattr(module, "no_weight_decay", None)
        if callable(names):
            patterns += [f"{path}.{name}" if path else str(name) for name in names()]
    return patterns


def build_param_groups(
    model: nn.Module, plan: FreezePlan, *, lr: float, weight_decay: float, backbone_lr_factor: float
) -> list[dict[str, Any]]:
    """Parameter groups of the trainable parameters, in model order: head and backbone (at
    ``lr × backbone_lr_factor``), each split into decayed weights and undecayed ones: biases
    and norms (1-D), and what the model's own ``no_weight_decay()`` names
    (:func:`no_weight_decay_patterns`). Every group records ``name``, ``param_names`` and
    ``initial_lr`` (the schedule scales it)."""
    exempt = no_weight_decay_patterns(model)
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if in_paths(name, plan.head_paths) else "backbone"
        decay = param.ndim > 1 and not any(fnmatchcase(name, pattern) for pattern in exempt)
        key = part if decay else f"{part} (no decay)"
        if key not in groups:
            group_lr = lr if part == "head" else lr * backbone_lr_factor
            groups[key] = {
                "name": key,
                "params": [],
                "param_names": [],
                "lr": group_lr,
                "initial_lr": group_lr,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    order = ["head", "head (no decay)", "backbone", "backbone (no decay)"]
    return [groups[key] for key in order if key in groups]


def build_optimizer(
    model: nn.Module,
    plan: FreezePlan,
    *,
    kind: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    backbone_lr_factor: float = 0.1,
) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over exactly the parameters that train under ``plan``
    (``apply_freeze`` must have run)."""
    groups = build_param_groups(model, plan, lr=lr, weight_decay=weight_decay, backbone_lr_factor=backbone_lr_factor)
    if not groups:
        raise HeadswapError("nothing to train: every parameter is frozen")
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    raise HeadswapError(f"unknown optimizer {kind!r}; use one of {', '.join(OPTIMIZERS)}")


def trainable_parameters_match_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """True when the optimizer holds each parameter with ``requires_grad`` exactly once, and
    nothing else."""
    in_optimizer = [id(p) for group in optimizer.param_groups for p in group["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    return len(in_optimizer) == len(set(in_optimizer)) and set(in_optimizer) == trainable


def carry_optimizer_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> int:
    """Copy per-parameter state (Adam moments, momentum) of parameters in both optimizers,
    so the head does not restart cold when the backbone unfreezes. Returns how many."""
    carried = 0
    new_params = {id(p) for group in new.param_groups for p in group["params"]}
    for param, state in old.state.items():
        if id(param) in new_params and state:
            new.state[param] = state
            carried += 1
    return carried


# --- schedule --------------------------------------------------------------------------------


def build_schedule(
    kind: str,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    start_step: int = 0,
) -> LambdaLR:
    """The learning-rate schedule of ``epochs`` epochs of ``steps_per_epoch`` optimizer steps:
    each group's lr is its ``initial_lr`` times a per-step factor, and is already set for the
    first step when this returns.

    ``cosine``: linear warm-up over ``warmup_epochs`` (cosine only), then cosine decay to zero
    at the last step. ``onecycle``: 30 % cosine ramp from lr/25 to lr, then cosine decay to
    lr/250000 (torch's OneCycleLR defaults, without momentum cycling). ``constant``: 1.

    A ``LambdaLR`` with these closed-form factors rather than torch's CosineAnnealingLR or
    OneCycleLR, so runs repeat the learning rates of runs recorded before: CosineAnnealingLR
    computes recursively (its values drift in the last bits), OneCycleLR peaks one step
    earlier, ends elsewhere and cycles Adam's betas. The factor is a plain function, which
    ``LambdaLR.state_dict()`` leaves out (the state stays JSON): the shape always comes from
    the current settings (a resumed run may train more epochs), only the position from a
    checkpoint, passed back as ``start_step`` (see :func:`schedule_position`).
    """
    if kind not in SCHEDULES:
        raise HeadswapError(f"unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")
    total = max(1, int(epochs * steps_per_epoch))
    warmup = int(round(warmup_epochs * steps_per_epoch)) if kind == "cosine" else 0
    warmup = max(0, min(warmup, total - 1))
    rise = max(1, int(0.3 * total))
    start, end = 1.0 / 25.0, 1.0 / 25.0 / 1e4

    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        if kind == "cosine":
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
        if step < rise:
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * step / rise))
        progress = min(1.0, (step - rise) / max(1, total - rise))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor, last_epoch=start_step - 1)


def schedule_position(state: Mapping[str, Any]) -> int:
    """How many steps the schedule saved as ``state`` had taken: ``LambdaLR``'s
    ``last_epoch``, or ``step_count`` in checkpoints written before the schedule was a torch
    scheduler (so their run folders still resume)."""
    return int(state["last_epoch"] if "last_epoch" in state else state["step_count"])
