"""Fully sharded data parallelism (FSDP2, = ZeRO stage 3): parameters, gradients and optimizer state all sharded.

Survey §4.3.2 (ZeRO): stage 3 also partitions the parameters. Each rank stores 1/N of every weight; right
before a layer runs, its full weights are all-gathered, used, and freed again; after its backward the gradients
are reduce-scattered so each rank keeps only the averaged gradient of its own shard, and the optimizer updates
only that shard. Memory per rank for model state falls to ≈ 16 bytes · P / N, at the price of one all-gather
(forward), one more (backward) and one reduce-scatter per layer per step.

torch's FSDP2 (`fully_shard`) turns every parameter into a DTensor sharded on dim 0 over a device mesh. The
model is cut into *units*: each unit's parameters are gathered together, so only one unit's full weights exist
at a time (plus the root's). As in torchtitan, a minillm GPT's units are its transformer Blocks, and the root
module takes the remaining parameters (embeddings, final norm, output layer). Any other `nn.Module` works too:
`fsdp_units` picks its units by parameter count (or follows a policy you pass), so you can print the plan
before sharding. The model class itself is unchanged: parallelism is applied from outside. Any optimizer then
works on the shards.

Mixed precision (`mp`): the shards the optimizer updates stay fp32, the all-gathered copies used for compute are
bf16/fp16, and gradients are reduce-scattered in fp32. With torch.compile each unit is compiled before it is
sharded, so FSDP2's communication hooks stay outside the compiled graphs (torchtitan's order).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from minillm.model.transformer import GPT
from minillm.train.parallel import group as pdist

# A wrapping policy: None (the default rule), a predicate (name, module) -> bool, or names / module classes.
UnitPolicy = Callable[[str, nn.Module], bool] | Sequence[str | type[nn.Module]] | None
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def mixed_precision_kwargs(dtype: torch.dtype | None) -> dict[str, Any]:
    """The `fully_shard` kwargs for training under autocast `dtype` (PrecisionPolicy.dtype; None = fp32).

    bf16: MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32). The all-gathered weights are bf16 (half the
    bytes on the wire, and what autocast would cast them to anyway), while gradients are reduce-scattered in fp32:
    averaging N bf16 gradients would drop the low bits that small updates live in. The shards the optimizer
    updates (and Adam's moments) stay fp32. fp32 and fp16: {} (fp32 shards, autocast casts per op; fp16's
    GradScaler is not rehearsed on 16-bit sharded parameters, so they are not made fp16).
    This is the Trainer's choice under autocast; `shard_fsdp2(mp=torch.float16)` does gather fp16 copies.
    """
    if dtype == torch.bfloat16:
        return {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}
    if dtype in (None, torch.float16, torch.float32):
        return {}
    raise ValueError(f"mixed_precision_kwargs: no FSDP2 policy for dtype {dtype}; use torch.bfloat16, "
                     f"torch.float16 or None (fp32)")


def mp_policy(mp: torch.dtype | MixedPrecisionPolicy | None) -> MixedPrecisionPolicy | None:
    """The FSDP2 policy for `shard_fsdp2(mp=...)`: None/fp32 -> None (no casts); bf16 or fp16 ->
    MixedPrecisionPolicy(param_dtype=that, reduce_dtype=fp32); a MixedPrecisionPolicy is returned as is.

    Gradients are reduced in fp32 for both 16-bit types: the sum of N low-precision gradients would round away the
    small ones. fp16 has no loss scaling here: gradients lose precision below 6e-5 and flush to zero below
    6e-8 (use bf16 if that bites).
    """
    if mp is None or isinstance(mp, MixedPrecisionPolicy):
        return mp
    if not isinstance(mp, torch.dtype):
        raise TypeError(f"mp={mp!r} must be None, a torch dtype (torch.bfloat16, torch.float16, torch.float32) "
                        f"or a torch.distributed.fsdp.MixedPrecisionPolicy")
    if mp == torch.float32:
        return None
    if mp in _LOW_PRECISION:
        return MixedPrecisionPolicy(param_dtype=mp, reduce_dtype=torch.float32)
    raise ValueError(f"mp={mp} has no FSDP2 mixed-precision policy; use torch.bfloat16, torch.float16, "
                     f"torch.float32 / None (no casts), or pass a MixedPrecisionPolicy")


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() counts a tied weight once


def _post_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) for every submodule but the root, each after all the modules inside it (the order
    fully_shard needs) and siblings in model order; a module reused in two places is listed once."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = {id(model)}

    def visit(prefix: str, m: nn.Module) -> None:
        for name, child in m.named_children():
            if id(child) not in seen:
                seen.add(id(child))
                visit(f"{prefix}{name}.", child)
                out.append((prefix + name, child))

    visit("", model)
    return out


def _shared_outside(model: nn.Module, unit: nn.Module, taken: set[int]) -> str | None:
    """The name of a module outside `unit` that holds a parameter FSDP would shard as part of `unit` (a tied
    weight), or None. Params already taken by an inner unit are not `unit`'s to shard."""
    inside = {id(m) for m in unit.modules()}
    mine = {id(p) for p in unit.parameters()} - taken
    for name, m in model.named_modules(remove_duplicate=False):
        if id(m) not in inside and any(id(p) in mine for p in m.parameters(recurse=False)):
            return name or "<root>"
    return None


def _default_units(model: nn.Module) -> list[str]:
    """The default rule (see `fsdp_units`)."""
    if isinstance(model, GPT):
        return [f"blocks.{i}" for i in range(len(model.blocks))]

    def largest(m: nn.Module) -> tuple[str, nn.Module, int] | None:
        sized = [(n, c, _numel(c)) for n, c in m.named_children()]
        return max(sized, key=lambda t: t[2]) if sized else None

    def is_container(m: nn.Module) -> bool:
        if isinstance(m, (nn.ModuleList, nn.Sequential, nn.ModuleDict)):
            return True
        big = largest(m)
        return big is not None and 2 * big[2] > _numel(m)

    prefix, node = "", model
    while (big := largest(node)) is not None:
        name, child, n = big
        if not (2 * n > _numel(node) and is_container(child)):
            break
        prefix, node = f"{prefix}{name}.", child
    total = _numel(node)
    sized = [(n, c, _numel(c)) for n, c in node.named_children()]
    sized = [t for t in sized if t[2] > 0]
    k = len(sized)
    picked: list[tuple[str, nn.Module]] = []
    for name, child, size in sized:
        if 2 * k * size < total:  # less than half an equal share of the node: stays with the root
            continue
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):  # no forward, FSDP's hooks would never run: its
            picked += [(f"{prefix}{name}.{n}", c) for n, c in child.named_children() if _numel(c) > 0]  # layers
        else:
            picked.append((prefix + name, child))
    return [n for n, c in picked if _shared_outside(model, c, set()) is None]  # a tied weight stays with the root


def _check(model: nn.Module, names: list[str]) -> None:
    """Every unit exists, holds parameters, has a forward, comes after the units nested in it, and does not
    share a parameter with a module outside it."""
    modules = dict(model.named_modules())
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"fsdp units {dup} are listed more than once; name each unit once")
    taken: set[int] = set()
    for i, name in enumerate(names):
        if name == "":
            raise ValueError("fsdp units: '' is the root, which shard_fsdp2 always wraps last; leave it out")
        if name not in modules:
            close = [n for n in modules if n and (n.startswith(name) or name.startswith(n))][:8]
            raise ValueError(f"fsdp unit {name!r} is not a submodule of {type(model).__name__}; "
                             f"names look like {close or [n for n in modules if n][:8]} "
                             f"(print(fsdp_units(model)) or model.named_modules() lists them)")
        unit = modules[name]
        if isinstance(unit, (nn.ModuleList, nn.ModuleDict)):
            raise ValueError(f"fsdp unit {name!r} is a {type(unit).__name__}, which has no forward, so FSDP's "
                             f"gather hooks would never run; list its children instead (e.g. '{name}.0')")
        if _numel(unit) == 0:
            raise ValueError(f"fsdp unit {name!r} ({type(unit).__name__}) holds no parameters; leave it out")
        inner = [n for n in names[i + 1:] if n.startswith(name + ".")]
        if inner:
            raise ValueError(f"fsdp unit {name!r} is listed before {inner}, which it contains; fully_shard works "
                             f"bottom-up, so list inner units first: {inner + [name]}")
        other = _shared_outside(model, unit, taken)
        if other is not None:
            raise ValueError(f"fsdp unit {name!r} shares a parameter with {other!r} outside it (tied weights): "
                             f"sharding it would untie them; make a unit that contains both, or leave both to "
                             f"the root")
        taken |= {id(p) for p in unit.parameters()}


def fsdp_units(model: nn.Module, units: UnitPolicy = None) -> list[str]:
    """The qualified names of the submodules `shard_fsdp2` wraps as FSDP units, in wrapping order (the root,
    wrapped last, is not listed). Print it to see the plan before sharding.

    units None, the default rule:
      - a minillm GPT: each Block, `['blocks.0', ..., 'blocks.{n_layer-1}']` (torchtitan's choice);
      - any other module: start at the root and step into its largest child (by parameter count, a tied weight
        counted once) while that child holds more than half of the current module's parameters AND is a
        container: an nn.Sequential/ModuleList/ModuleDict, or a module whose own largest child holds more than
        half of it. Where that stops, with P parameters in the current module and k children that hold any,
        every child holding at least P / (2k) (half an equal share) becomes a unit; such a ModuleList/ModuleDict
        (no forward to hook) gives its children instead, and a child that shares a weight with a module outside
        it is skipped (tied weights stay together in the root). Everything else stays with the root.
      Examples: `nn.Sequential(Linear(64, 64), ReLU(), Linear(64, 64), ReLU(), Linear(64, 64), ReLU(),
      Linear(64, 64))` -> ['0', '2', '4', '6'] (four equal shares); with a narrow input and output,
      Linear(8, 64), Linear(64, 64), Linear(64, 64), Linear(64, 4) (576, 4160, 4160, 260 params, threshold
      9156 / 8 = 1144) -> ['2', '4'], the small first and last layers staying with the root. A GPT wrapped in
      another module (`Outer(lm=gpt)`) -> ['lm.blocks.0', 'lm.blocks.1', ...]: `lm` holds most and its
      `blocks` hold most of it, and no single Block holds most of `blocks`.
    units a callable (name, module) -> bool: every submodule (not the root) it returns True for, ordered
      children before parents (the order fully_shard needs).
    units a list of names and/or module classes: the named submodules in the order given, a class standing
      for all its instances (inner before outer). An inner unit must come before a unit that contains it.

    Raises ValueError for a model without parameters, an unknown name, a class with no instance, a name
    listed twice, an outer unit before an inner one, a unit without parameters or without a forward
    (ModuleList/ModuleDict), or a unit that shares a (tied) parameter with a module outside it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fsdp_units expects an nn.Module, got {type(model).__name__}")
    if _numel(model) == 0:
        raise ValueError(f"{type(model).__name__} has no parameters: there is nothing for FSDP to shard")
    if units is None:
        names = _default_units(model)
    elif isinstance(units, (str, type)):
        raise TypeError(f"units={units!r}: pass a list (units=[{units!r}]), a callable (name, module) -> bool, "
                        f"or None for the default rule")
    elif callable(units):
        names = [n for n, m in _post_order(model) if units(n, m)]
    elif isinstance(units, Sequence):
        names = []
        for u in units:
            if isinstance(u, str):
                names.append(u)
            elif isinstance(u, type) and issubclass(u, nn.Module):
                found = [n for n, m in _post_order(model) if isinstance(m, u)]
                if not found:
                    raise ValueError(f"fsdp units: no submodule of {type(model).__name__} is a {u.__name__}")
                names.extend(found)
            else:
                raise TypeError(f"fsdp units: {u!r} is neither a submodule name (str) nor an nn.Module class")
    else:
        raise TypeError(f"units={units!r} must be None, a callable (name, module) -> bool, or a list of submodule "
                        f"names / nn.Module classes")
    _check(model, names)
    return names


def shard_fsdp2(model: nn.Module, mesh: DeviceMesh | None = None, *, units: UnitPolicy = None,
                compile: bool = False, mp: torch.dtype | MixedPrecisionPolicy | None = None,
                **fsdp_kwargs) -> nn.Module:
    """Apply `fully_shard` to each unit of `fsdp_units(model, units)`, then to `model`; return `model` (sharded
    in place).

    Any nn.Module: a GPT's units are its Blocks, another model's are chosen by parameter count (see `fsdp_units`
    for the rule and the policies `units` accepts). mesh None = a 1-D mesh over all ranks, on the model's device
    type (cuda or cpu). mp: None/torch.float32 = no casts; torch.bfloat16 or torch.float16 = all-gather and
    compute in that dtype, reduce-scatter gradients in fp32, keep fp32 shards for the optimizer (`mp_policy`);
    or a MixedPrecisionPolicy, used as is. `fsdp_kwargs` go to every `fully_shard` call (e.g.
    `reshard_after_forward=False`, or `**mixed_precision_kwargs(torch.bfloat16)` as the Trainer passes; not
    together with `mp`). After this, each parameter is a DTensor holding this rank's shard; `p.full_tensor()`
    gathers the whole weight. Build the optimizer after this call.
    compile=True compiles each unit in place (`module.compile()`) BEFORE sharding it, as torchtitan does: the
    graphs then hold one unit's math and FSDP2's all-gather/reduce-scatter hooks run around them (dynamo skips
    FSDP hooks), whereas compiling the sharded model as a whole traces through every unit's hooks. In place
    rather than `torch.compile(unit)`, so the state_dict keys (and checkpoints) stay those of the plain model.
    Nested units cannot be compiled this way (the outer graph would contain the inner unit's hooks). Do not
    torch.compile the returned model again.
    """
    names = fsdp_units(model, units)
    policy = mp_policy(mp)
    if policy is not None:
        if "mp_policy" in fsdp_kwargs:
            raise ValueError("shard_fsdp2: got both mp= and mp_policy=; pass one of them")
        fsdp_kwargs["mp_policy"] = policy
    if compile:
        nested = [(a, b) for a in names for b in names if b.startswith(a + ".")]
        if nested:
            raise ValueError(f"shard_fsdp2(compile=True): unit {nested[0][0]!r} contains unit {nested[0][1]!r}; "
                             f"compiling the outer one would trace the inner one's FSDP hooks: use non-nested "
                             f"units, or compile=False")
    if mesh is None:
        if not dist.is_initialized():
            raise RuntimeError("shard_fsdp2: no process group; call init_distributed() first (or run under spawn)")
        device_type = next(model.parameters()).device.type
        mesh = init_device_mesh(device_type, (pdist.world_size(),))
    for name in names:
        unit = model.get_submodule(name)
        if compile:
            unit.compile()
        fully_shard(unit, mesh=mesh, **fsdp_kwargs)
    fully_shard(model, mesh=mesh, **fsdp_kwargs)
    return model
