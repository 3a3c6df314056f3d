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

Checkpoints (`full_state_dicts`, `load_full_state_dicts`): a sharded run saves the format of a single process.
On save the shards are all-gathered into full tensors on rank 0's CPU; on load every rank takes its own slice of
the full tensors back. So one file serves any number of ranks, `load_run`, and plain single-process training.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
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


# ----------------------------------------------------------------------------- checkpoints


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(weights, optimizer state) of a sharded model, gathered in full onto rank 0's CPU, in the single-process
    format: model.state_dict()'s names (a tied weight: one tensor under both names) and optimizer.state_dict()'s
    integer parameter ids, ready for `save_checkpoint(model_state=, optimizer_state=)`. A collective: call it on
    every rank; the other ranks get ({}, None). Peak memory on rank 0: one full copy of both in CPU RAM.

    torch's get_model_state_dict / get_optimizer_state_dict (full_state_dict=True, cpu_offload=True) do the
    all-gathers; only the optimizer state's keys are renamed here (torch names parameters by their FQN).
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the module with clean names
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # cpu_offload: the full copy on rank 0 only
    weights = get_model_state_dict(model, options=options)
    # An optimizer that has not stepped has no state to gather (and torch would first create it by a zero-lr step).
    gather = optimizer is not None and bool(optimizer.state)
    optim_state = (get_optimizer_state_dict(model, optimizer, options=options) if gather  # {} on other ranks
                   else optimizer.state_dict() if optimizer is not None else None)
    if pdist.rank() != 0:
        return {}, None
    if gather:
        optim_state = _ids_from_names(optim_state)
    first: dict[int, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():  # a tied weight is one Parameter under two names
        if id(t) in first:
            weights[name] = weights[first[id(t)]]  # gathered twice: one tensor again, so it is stored once
        else:
            first[id(t)] = name
    return weights, optim_state


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None,
                          weights: dict[str, torch.Tensor], optim_state: dict | None) -> None:
    """Load full (unsharded, single-process format) weights and optimizer state into a sharded model and its
    optimizer: each rank keeps its own slice. A collective: call it on every rank with the same full dicts
    (`load_checkpoint` does, for a sharded model). Raises ValueError when the optimizer state does not fit.

    broadcast_from_rank0=True (only rank 0 holding the dicts) works on gloo too, but would help only a rank that
    cannot read the checkpoint, which it also needs for its own RNG states and data position; so every rank reads.
    """
    model = getattr(model, "_orig_mod", model)
    options = StateDictOptions(full_state_dict=True)
    if optimizer is not None:
        if optim_state is None:
            raise ValueError("there is no optimizer state to load (saved with optimizer=None); pass optimizer=None")
        # Before the weights: torch creates an empty optimizer state by a zero-gradient, lr=0 step, which then
        # cannot touch the loaded weights.
        set_optimizer_state_dict(model, optimizer, _names_from_ids(model, optimizer, optim_state), options=options)
    set_model_state_dict(model, weights, options=options)


def _ids_from_names(osd: dict) -> dict:
    """torch's FQN-keyed optimizer state dict -> optimizer.state_dict()'s: parameters numbered across groups."""
    index: dict[str, int] = {}
    groups = [{**g, "params": [index.setdefault(name, len(index)) for name in g["params"]]}
              for g in osd["param_groups"]]
    return {"state": {index[name]: v for name, v in osd["state"].items()}, "param_groups": groups}


def _names_from_ids(model: nn.Module, optimizer: torch.optim.Optimizer, osd: dict) -> dict:
    """optimizer.state_dict()'s format -> torch's FQN-keyed one, by this optimizer's own parameter order."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [[names.get(id(p)) for p in g["params"]] for g in optimizer.param_groups]
    saved = [g["params"] for g in osd["param_groups"]]
    if any(None in g for g in order) or [len(g) for g in order] != [len(g) for g in saved]:
        raise ValueError(f"the optimizer state does not fit this optimizer (saved: groups of {[len(g) for g in saved]} "
                         f"parameters, this one: {[len(g) for g in order]}, or it holds parameters outside the "
                         f"model); build the optimizer the same way as the saved run (same param groups, same model)")
    name_of = {i: n for ids, ns in zip(saved, order) for i, n in zip(ids, ns)}
    return {"state": {name_of[i]: v for i, v in osd["state"].items()},
            "param_groups": [{**g, "params": ns} for g, ns in zip(osd["param_groups"], order)]}
