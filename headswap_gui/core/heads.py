"""Find every classifier head of a model and replace it.

Detection does not depend on a table of attribute names: it traces which layers the logits
are computed from (see :mod:`tracing`). The table of torchvision paths and timm's own
``pretrained_cfg['classifier']`` only confirm what tracing found and name it for the user.
A second trace in training mode finds auxiliary heads, which run only while training.

A head is a Linear (or 1×1 convolution) whose output reaches the model's output through
parameter-free operations alone and is not mixed with the trunk's own stream on the way: a
projection added to a residual stream, or one whose output also feeds another layer, is part
of the trunk. A model whose output is the trunk's pooled features (a feature extractor such
as DINOv2 or SigLIP built with ``num_classes=0``) has no head; its empty head slot is
reported with role ``new``, and replacing it attaches a real head there.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from .errors import HeadError, HeadNotFoundError
from .tracing import TraceResult, trace_forward

HeadRole = Literal["main", "auxiliary", "distillation", "new"]  # new: an empty slot of a feature extractor
HEAD_DESIGNS = ("linear", "mlp")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
NORMS = ("none", "batchnorm", "layernorm")
SPEC_ATTRIBUTE = "headswap_spec"  # set on every head this module builds
ATTACHED_HEAD_PATH = "headswap_head"  # where a head goes on an encoder with no head slot (see attach_head)

# torchvision's classifier attribute per family; used only to confirm and name a traced head.
TORCHVISION_HEAD_PATHS = frozenset(
    {"fc", "classifier", "classifier.1", "classifier.2", "classifier.3", "classifier.5",
     "classifier.6", "head", "heads.head", "aux1.fc2", "aux2.fc2", "AuxLogits.fc"}
)


@dataclass(frozen=True)
class HeadSpec:
    """The design of a new head: a single linear layer, or an MLP."""

    design: str = "linear"
    hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    dropout: float = 0.0
    norm: str = "none"

    def __post_init__(self) -> None:
        if self.design not in HEAD_DESIGNS:
            raise HeadError(f"unknown head design {self.design!r}; choose one of {', '.join(HEAD_DESIGNS)}")
        if self.activation not in ACTIVATIONS:
            raise HeadError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.norm not in NORMS:
            raise HeadError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise HeadError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.design == "mlp" and (not self.hidden or any(int(h) < 1 for h in self.hidden)):
            raise HeadError("an MLP head needs at least one hidden size, each ≥ 1 (e.g. 512)")

    def describe(self) -> str:
        if self.design == "linear":
            return "Linear" + (f", dropout {self.dropout:g}" if self.dropout else "")
        parts = [f"MLP {'→'.join(str(h) for h in self.hidden)}", self.activation]
        if self.norm != "none":
            parts.append(self.norm)
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadSpec:
        return cls(
            design=str(data.get("design", "linear")),
            hidden=tuple(int(h) for h in data.get("hidden", (512,))),
            activation=str(data.get("activation", "relu")),
            dropout=float(data.get("dropout", 0.0)),
            norm=str(data.get("norm", "none")),
        )


@dataclass(frozen=True)
class HeadInfo:
    """One classifier head of a model."""

    path: str
    type_name: str
    in_features: int
    out_features: int
    role: HeadRole
    found_by: str
    is_conv: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type_name,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "role": self.role,
            "found_by": self.found_by,
        }


@dataclass(frozen=True)
class HeadDetection:
    """Heads found, with the traces that found them (reused for the layer tree)."""

    heads: tuple[HeadInfo, ...]
    eval_trace: TraceResult | None = field(default=None, compare=False)
    train_trace: TraceResult | None = field(default=None, compare=False)  # None: not needed


# --- detection -------------------------------------------------------------------------------


def find_heads(model: nn.Module, input_size: int | None = None, head_paths: list[str] | None = None) -> list[HeadInfo]:
    """Every classifier head of ``model``: main, auxiliary and distillation heads, or the
    empty slot of a feature extractor (role ``new``).

    ``input_size`` is the side of the dummy images; ``None`` takes the model's own (see
    :func:`input_size.find_input_size`). ``head_paths`` names the heads explicitly (the user
    knows better, or detection failed). Raises :class:`HeadError` when no head can be found,
    saying how to name one.
    """
    return list(detect_heads(model, input_size, head_paths).heads)


def detect_heads(model: nn.Module, input_size: int | None = None, head_paths: list[str] | None = None) -> HeadDetection:
    """Like :func:`find_heads`, also returning the eval-mode trace for the layer tree."""
    if head_paths:
        return HeadDetection(tuple(_named_head(model, path, input_size) for path in head_paths))
    eval_trace = None
    if input_size is None:
        from .input_size import find_input_size

        try:
            found = find_input_size(model)
        except HeadNotFoundError:
            heads = _heads_from_model_api(model)
            if heads:
                return HeadDetection(tuple(heads))
            raise
        input_size, eval_trace = found.size, found.trace
    try:
        eval_trace = eval_trace or trace_forward(model, input_size, train=False)
    except Exception as error:
        heads = _heads_from_model_api(model)
        if heads:
            return HeadDetection(tuple(heads))
        raise HeadNotFoundError(
            f"could not run a dummy {input_size}×{input_size} forward pass to find the head "
            f"(the model said: {str(error).strip().splitlines()[0] if str(error).strip() else 'nothing'}); "
            "name the head layer yourself"
        ) from error
    main_paths: list[str] = []
    for logits in eval_trace.main_outputs:
        if logits.dim() in (3, 4):  # tokens or feature maps: an encoder, whatever layer made them
            return HeadDetection((_attachable_head(model, logits),), eval_trace)
        main_paths.extend(p for p in _producers(logits, eval_trace, model) if p not in main_paths)
    api_slots = _feature_slots(model, eval_trace, api_only=True)
    if api_slots and main_paths and _all_run_before(main_paths, api_slots, eval_trace):
        # timm's get_classifier() names an empty slot downstream of the Linear tracing found:
        # that Linear is the trunk's (a projector before a shape-bound norm), the model is headless.
        main_paths = []
    if not main_paths:
        slots = api_slots or _feature_slots(model, eval_trace)
        if slots:
            return HeadDetection(slots, eval_trace)
    aux_paths: list[str] = []
    train_trace = None
    if _has_idle_layers(model, eval_trace):
        # Auxiliary heads run only in training mode; look for them only where some layer with
        # weights stayed idle in eval mode (a second trace costs as much as the first).
        try:
            train_trace = trace_forward(model, input_size, train=True)
            for logits in train_trace.extra_outputs:
                aux_paths.extend(
                    p for p in _producers(logits, train_trace, model) if p not in main_paths + aux_paths
                )
        except Exception:  # noqa: BLE001 - train mode may need a real batch; aux heads are optional
            pass
    heads = [_head_info(model, path, "main", "traced: produces the logits") for path in main_paths]
    heads += [
        _head_info(model, path, "auxiliary", "traced: produces an auxiliary output in training mode")
        for path in aux_paths
    ]
    if not heads:
        shape = eval_trace.main_outputs[0].shape[1:] if eval_trace.main_outputs else ()
        raise HeadNotFoundError(
            f"no classifier head found: the model's output ({'×'.join(map(str, shape)) or 'one number'} per image) "
            "comes from inside its trunk (no Linear or 1×1 convolution produces it alone) and there is no empty head slot; "
            "name the head layer yourself"
        )
    return HeadDetection(tuple(_confirm(model, head) for head in heads), eval_trace, train_trace)


def _has_idle_layers(model: nn.Module, trace: TraceResult) -> bool:
    """Whether a whole branch with weights never ran. A layer that did not run inside a parent
    that did (``nn.MultiheadAttention`` uses ``out_proj``'s weights without calling it) is not
    idle; a branch such as GoogLeNet's ``aux1``, never entered in eval mode, is."""
    executed = set(trace.executed)

    def inside_executed_parent(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:end]) in executed for end in range(1, len(parts)))

    return any(
        path not in executed
        and any(True for _ in module.parameters(recurse=False))
        and not inside_executed_parent(path)
        for path, module in model.named_modules()
    )


def _producers(logits: torch.Tensor, trace: TraceResult, model: nn.Module) -> list[str]:
    """Paths of the head layers the logits are computed from.

    Walks the autograd graph back from the logits through parameter-free operations to the
    first layer with weights on every path. The logits have heads only if *every* path ends
    at a head layer whose output flows nowhere but to the logits: a path that reaches the
    trunk first (a norm layer, the dummy images, a layer whose output also feeds another
    layer) means the output is the trunk's stream — features, or a residual sum — and a
    Linear found on a parallel path is a projection inside the trunk, not a head.
    """
    root = logits.grad_fn
    if root is None:
        return []
    consumers = _consumers(root, trace)
    only_to_output = _flows_only_to_output(root, consumers, trace)
    trunk: object = object()  # "this path reaches the trunk"
    reach: dict[Any, Any] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if node in reach:
            continue
        path = trace.producer_of.get(node)
        if path is not None:
            head = _is_head_layer(model.get_submodule(path)) and only_to_output.get(node, False)
            reach[node] = [_outermost_built_head(model, path)] if head else trunk
            continue
        if _is_dummy_images(node, trace):
            reach[node] = trunk
            continue
        inputs = [parent for parent, _ in node.next_functions if parent is not None]
        if not expanded:
            stack.append((node, True))
            stack.extend((parent, False) for parent in inputs if parent not in reach)
            continue
        found: list[str] = []
        result: Any = found
        for parent in inputs:
            branch = reach[parent]
            if branch is trunk:
                result = trunk
                break
            found.extend(p for p in branch if p not in found)
        reach[node] = result
    answer = reach[root]
    return [] if answer is trunk else list(answer)


def _consumers(root: Any, trace: TraceResult) -> dict[Any, list[Any]]:
    """For every autograd node of the forward pass, the nodes that use its output (the graph
    is stored the other way round). The whole graph: a layer's output that is also read deep
    inside another layer (an attention pool's projection feeding its MLP's norm) must show."""
    consumers: dict[Any, list[Any]] = {root: []}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        for parent, _ in node.next_functions:
            if parent is None:
                continue
            if parent not in consumers:
                consumers[parent] = []
                queue.append(parent)
            consumers[parent].append(node)
    return consumers


def _flows_only_to_output(root: Any, consumers: dict[Any, list[Any]], trace: TraceResult) -> dict[Any, bool]:
    """Which nodes' outputs reach the logits through parameter-free operations alone.

    A node that also feeds a layer with weights (one of its uses leads to another layer's
    output) is read by the trunk; a head's output is read by nothing but the output. Nodes
    are settled after all their uses, in the graph's order from the logits down."""
    pending = {node: len(uses) for node, uses in consumers.items()}
    clean: dict[Any, bool] = {}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        clean[node] = node is root or all(clean[use] and use not in trace.producer_of for use in consumers[node])
        for parent, _ in node.next_functions:
            if parent is not None and parent in pending:
                pending[parent] -= 1
                if pending[parent] == 0:
                    queue.append(parent)
    return clean


def _attachable_head(model: nn.Module, features: torch.Tensor) -> HeadInfo:
    """The head an encoder that outputs tokens (B, N, C) or maps (B, C, H, W) gets: attached
    after its output, on the mean over tokens or positions (:func:`attach_head`)."""
    if ATTACHED_HEAD_PATH in dict(model.named_children()):
        return _head_info(model, ATTACHED_HEAD_PATH, "main", "attached after the encoder's mean-pooled output")
    width = int(features.shape[-1] if features.dim() == 3 else features.shape[1])
    what = "tokens" if features.dim() == 3 else "feature maps"
    shape = "×".join(map(str, features.shape[1:]))
    return HeadInfo(
        ATTACHED_HEAD_PATH, "(none)", width, 0, "new",
        f"feature encoder: it outputs {what} ({shape}) with no head slot; a new head will be attached "
        f"after their mean ({width} features)",
    )


def _is_dummy_images(node: Any, trace: TraceResult) -> bool:
    variable = getattr(node, "variable", None)
    return variable is not None and trace.images is not None and variable is trace.images


def _all_run_before(paths: list[str], slots: tuple[HeadInfo, ...], trace: TraceResult) -> bool:
    order = {path: i for i, path in enumerate(trace.executed)}
    first_slot = min(order.get(slot.path, -1) for slot in slots)
    return first_slot >= 0 and all(order.get(path, len(order)) < first_slot for path in paths)


def _feature_slots(model: nn.Module, trace: TraceResult, *, api_only: bool = False) -> tuple[HeadInfo, ...]:
    """The empty head slot of a model that outputs pooled features: where timm's
    ``get_classifier()`` points (at any depth of a wrapped model), else (unless ``api_only``)
    the first ``nn.Identity`` that ran after the last layer with weights and gives the
    output's shape."""
    if not trace.main_outputs:
        return ()
    shape = tuple(trace.main_outputs[0].shape)
    if len(shape) != 2:
        return ()  # token or map features: a head there would not give one score per class
    width = int(shape[1])
    paths = {id(module): path for path, module in model.named_modules()}
    slots: list[str] = []
    for _path, module in model.named_modules():
        get_classifier = getattr(module, "get_classifier", None)
        if not callable(get_classifier):
            continue
        try:
            classifier = get_classifier()
        except Exception:  # noqa: BLE001 - a model's own API may not work headless
            continue
        for candidate in classifier if isinstance(classifier, (tuple, list)) else (classifier,):
            slot = paths.get(id(candidate)) if isinstance(candidate, nn.Module) else None
            if not slot or any(True for _ in candidate.parameters()):
                continue
            if any(True for _ in candidate.children()):
                # A parameter-free head container (timm's ClassifierHead: pool, drop, fc): the
                # slot is its empty layer that already sees the pooled features, not the pool.
                inner = [
                    p for p in trace.executed
                    if p.startswith(slot + ".") and type(model.get_submodule(p)) is nn.Identity
                    and trace.output_shapes.get(p) == shape
                ]
                slot = inner[0] if inner else None
            if slot and slot not in slots:
                slots.append(slot)
        if slots:
            break
    if not slots and not api_only:
        executed = trace.executed
        last_weighted = max(
            (i for i, p in enumerate(executed) if any(True for _ in model.get_submodule(p).parameters(recurse=False))),
            default=-1,
        )
        slots = [
            p for p in executed[last_weighted + 1:]
            if type(model.get_submodule(p)) is nn.Identity and trace.output_shapes.get(p) == shape
        ][:1]
    return tuple(
        HeadInfo(
            path, "Identity", width, 0, "new",
            f"feature extractor: the model outputs {width} pooled features here; a new head will be attached",
        )
        for path in slots
    )


_HEAD_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _is_head_layer(module: nn.Module) -> bool:
    """A Linear, or a pointwise (1×1) convolution scoring every position (SqueezeNet)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return all(k == 1 for k in module.kernel_size)
    return isinstance(module, nn.Linear)


def _outermost_built_head(model: nn.Module, path: str) -> str:
    """If ``path`` lies inside a head that headswap built, the path of that whole head."""
    parts = path.split(".")
    for end in range(1, len(parts) + 1):
        candidate = ".".join(parts[:end])
        if hasattr(model.get_submodule(candidate), SPEC_ATTRIBUTE):
            return candidate
    return path


def _named_head(model: nn.Module, path: str, input_size: int | None) -> HeadInfo:
    try:
        module = head_module(model, path)
    except AttributeError:
        raise HeadError(f"the model has no layer {path!r}; `headswap inspect` lists every layer path") from None
    if module is None or not any(True for _ in module.parameters()):
        # An empty slot (a feature extractor's Identity, an encoder's head-to-be): its width
        # comes from a trace, as detection found it.
        slot = next((h for h in detect_heads(model, input_size).heads if h.path == path and h.role == "new"), None)
        if slot is not None:
            return slot
    return _head_info(model, path, "main", "named by the user")


def _head_info(model: nn.Module, path: str, role: HeadRole, found_by: str) -> HeadInfo:
    module = model.get_submodule(path)
    first, last = _first_and_last_layer(module)
    if first is None or last is None:
        raise HeadError(
            f"layer {path!r} is a {type(module).__name__}, not a Linear or 1×1 convolution, so it "
            "cannot be used as a classifier head; pick the layer that produces the class scores"
        )
    if role == "main" and any(part.endswith("_dist") or part == "dist" for part in path.split(".")):
        role = "distillation"
    is_conv = isinstance(first, (nn.Conv1d, nn.Conv2d))
    in_features = first.in_channels if is_conv else first.in_features
    out_features = last.out_channels if is_conv else last.out_features
    type_name = type(module).__name__
    design = getattr(module, SPEC_ATTRIBUTE).describe() if hasattr(module, SPEC_ATTRIBUTE) else type_name
    if design != type_name:  # "Sequential (MLP 512, relu)"; a plain Linear head stays "Linear", not "Linear (Linear)"
        type_name = f"{type_name} ({design})"
    return HeadInfo(path, type_name, int(in_features), int(out_features), role, found_by, is_conv)


def _first_and_last_layer(module: nn.Module) -> tuple[nn.Module | None, nn.Module | None]:
    layers = [m for m in module.modules() if _is_head_layer(m)]
    return (layers[0], layers[-1]) if layers else (None, None)


def _confirm(model: nn.Module, head: HeadInfo) -> HeadInfo:
    """Name the authority that agrees with a traced head (timm's config, torchvision's path)."""
    timm_paths = _timm_classifier_paths(model)
    if head.path in timm_paths:
        return replace(head, found_by=f"{head.found_by}; confirmed by timm's pretrained_cfg['classifier']")
    if type(model).__module__.startswith("torchvision.") and head.path in TORCHVISION_HEAD_PATHS:
        return replace(head, found_by=f"{head.found_by}; confirmed by torchvision's `{head.path}` attribute")
    return head


def _timm_classifier_paths(model: nn.Module) -> tuple[str, ...]:
    """timm's ``pretrained_cfg['classifier']`` of the outermost timm model inside ``model``,
    as paths from ``model`` (a user's container holds the timm model as a submodule)."""
    for prefix, module in model.named_modules():
        cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
        if not isinstance(cfg, dict):
            continue
        paths = cfg.get("classifier")
        names = (paths,) if isinstance(paths, str) else tuple(paths) if isinstance(paths, (list, tuple)) else ()
        if names:
            return tuple(f"{prefix}.{name}" if prefix else name for name in names)
    return ()


def _heads_from_model_api(model: nn.Module) -> list[HeadInfo]:
    heads = []
    for path in _timm_classifier_paths(model):
        try:
            heads.append(_head_info(model, path, "main", "timm's pretrained_cfg['classifier'] (not traced)"))
        except (AttributeError, HeadError):
            continue
    return heads


# --- replacement -----------------------------------------------------------------------------


def build_head(
    in_features: int, num_classes: int, spec: HeadSpec, *, conv: bool = False, generator: torch.Generator | None = None
) -> nn.Module:
    """A new head for ``in_features`` inputs and ``num_classes`` outputs.

    ``conv`` builds 1×1 convolutions instead of Linear layers, for heads that work on feature
    maps (SqueezeNet). A plain linear design without dropout is a bare ``nn.Linear`` /
    ``nn.Conv2d``, so its weights keep the names other tools expect (``fc.weight``).
    ``generator`` draws the initial weights (see :func:`initialise_head`); without one they
    come from torch's process-wide generator.
    """
    if num_classes < 1:
        raise HeadError(f"the number of classes must be at least 1, got {num_classes}")

    def layer(inputs: int, outputs: int) -> nn.Module:
        return nn.Conv2d(inputs, outputs, kernel_size=1) if conv else nn.Linear(inputs, outputs)

    layers: list[nn.Module] = []
    width = in_features
    if spec.design == "mlp":
        for hidden in spec.hidden:
            layers.append(layer(width, hidden))
            if spec.norm == "batchnorm":
                layers.append(nn.BatchNorm2d(hidden) if conv else nn.BatchNorm1d(hidden))
            elif spec.norm == "layernorm":
                layers.append(nn.GroupNorm(1, hidden) if conv else nn.LayerNorm(hidden))
            layers.append(ACTIVATIONS[spec.activation]())
            if spec.dropout:
                layers.append(nn.Dropout(spec.dropout))
            width = hidden
    elif spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(layer(width, num_classes))
    head = layers[0] if len(layers) == 1 else nn.Sequential(*layers)
    setattr(head, SPEC_ATTRIBUTE, spec)
    if generator is not None:
        initialise_head(head, generator)
    return head


def initialise_head(head: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every Linear / Conv2d in ``head`` (Kaiming-uniform
    with a = √5, bias uniform in ±1/√fan_in), drawn from ``generator``.

    A seeded head then repeats exactly wherever it is built — the CLI's main thread or the
    window's GUI thread — without seeding the process-wide generator, which another thread
    may be drawing from at the same moment.
    """
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)) and module.weight.device.type != "meta":
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def count_head_params(in_features: int, num_classes: int, spec: HeadSpec, *, conv: bool = False) -> int:
    """Parameters of the head :func:`build_head` would make, without allocating it."""
    with torch.device("meta"):
        head = build_head(in_features, num_classes, spec, conv=conv)
    return sum(p.numel() for p in head.parameters())


def replace_head(
    model: nn.Module,
    num_classes: int,
    spec: HeadSpec | None = None,
    heads: list[HeadInfo] | None = None,
    input_size: int = 224,
    *,
    seed: int | None = None,
) -> list[HeadInfo]:
    """Swap every head of ``model`` for a new one with ``num_classes`` outputs, in place.

    Auxiliary and distillation heads are swapped with the same design, so every output of the
    model — also the train-mode auxiliary logits — has ``num_classes`` columns. New layers are
    created on the old head's device and dtype and keep its train/eval mode; every other
    weight is untouched. ``seed`` makes the new weights a function of the seed alone (one
    private generator, heads in order). Returns the new heads.
    """
    spec = spec or HeadSpec()
    heads = heads if heads is not None else find_heads(model, input_size)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    new_heads = []
    for head in heads:
        old = head_module(model, head.path)
        reference = next(old.parameters(), None) if old is not None else None
        if reference is None:
            reference = _floating_parameter(model)  # an empty slot: the new head lives where the trunk does
        new = build_head(head.in_features, num_classes, spec, conv=head.is_conv, generator=generator)
        if reference is not None:
            new = new.to(device=reference.device, dtype=reference.dtype)
        new.train(old.training if old is not None else model.training)
        set_head_module(model, head.path, new)
        role: HeadRole = "main" if head.role == "new" else head.role
        found_by = "attached here to the feature extractor" if head.role == "new" else head.found_by
        new_heads.append(_head_info(model, head.path, role, found_by))
    _update_class_count_attributes(model, num_classes)
    return new_heads


def _floating_parameter(model: nn.Module) -> nn.Parameter | None:
    return next((p for p in model.parameters() if p.is_floating_point()), None)


def built_heads(model: nn.Module) -> dict[str, HeadSpec]:
    """The heads headswap built into ``model``, by path, with their designs."""
    return {
        path: getattr(module, SPEC_ATTRIBUTE)
        for path, module in model.named_modules()
        if hasattr(module, SPEC_ATTRIBUTE)
    }


def set_head_module(model: nn.Module, path: str, module: nn.Module | None) -> None:
    """Put ``module`` at ``path``; at :data:`ATTACHED_HEAD_PATH` this attaches the head to an
    encoder without a slot (``None`` detaches it again, for undo)."""
    if path == ATTACHED_HEAD_PATH:
        if module is None:
            detach_head(model)
        elif _is_attached(model):
            model.headswap_head = module
        else:
            attach_head(model, module)
        return
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if module is None or name not in parent._modules:
        raise HeadError(f"the model has no layer {path!r} to replace")
    setattr(parent, name, module)


def head_module(model: nn.Module, path: str) -> nn.Module | None:
    """The module at a head's path; None for a head that is not attached yet."""
    if path == ATTACHED_HEAD_PATH and not _is_attached(model):
        return None
    return model.get_submodule(path)


_ATTACHED_CLASSES: dict[type, type] = {}


def attach_head(model: nn.Module, head: nn.Module) -> None:
    """Give an encoder that outputs tokens or maps a head of its own, in place: the model's
    class becomes a subclass whose forward pools the encoder's output (mean over tokens or
    positions) and applies ``model.headswap_head``. Every backbone parameter keeps its name;
    the head's are ``headswap_head.*``, so saved weights load back the same way."""
    base = type(model)
    attached = _ATTACHED_CLASSES.get(base)
    if attached is None:
        attached = type(f"{base.__name__}WithHead", (base,), {"forward": _forward_with_head, "_headswap_base": base})
        _ATTACHED_CLASSES[base] = attached
    model.__class__ = attached
    model.add_module(ATTACHED_HEAD_PATH, head)


def detach_head(model: nn.Module) -> None:
    """Undo :func:`attach_head`: the encoder as it was."""
    if _is_attached(model):
        del model._modules[ATTACHED_HEAD_PATH]
        model.__class__ = type(model)._headswap_base


def _is_attached(model: nn.Module) -> bool:
    return hasattr(type(model), "_headswap_base")


def _forward_with_head(self: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    features = type(self)._headswap_base.forward(self, *args, **kwargs)
    if isinstance(features, (tuple, list)):
        features = features[0]
    features = features.mean(1) if features.dim() == 3 else features.mean((2, 3)) if features.dim() == 4 else features
    return self.headswap_head(features)


def _update_class_count_attributes(model: nn.Module, num_classes: int) -> None:
    """Keep the model's own bookkeeping in step, so it saves and reports consistently."""
    if isinstance(getattr(model, "num_classes", None), int):
        model.num_classes = num_classes
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_labels"):
        config.num_labels = num_classes
