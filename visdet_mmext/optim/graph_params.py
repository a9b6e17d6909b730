"""Which tensor the loss's autograd graph holds for each parameter the optimizer holds.

Usually the parameter itself. Under FSDP2 (``fully_shard``) the optimizer holds each parameter
as a DTensor of this rank's slice, while the forward computes with an unsharded copy: a plain
``nn.Parameter`` that FSDP2 all-gathers into at the unit's first forward and keeps (its storage
is freed and refilled at every step, the object stays). FSDP2 records both in one ``FSDPParam``
per parameter (``sharded_param``, ``_unsharded_param``), held by the param groups of each
unit's state: read there. Torch 2.11 keeps one param group per unit (``_fsdp_param_group``),
2.13 a list (``_fsdp_param_groups``); both are read.

A sharded parameter that no ``FSDPParam`` holds (sharded by something other than
``fully_shard``, or a torch whose FSDP2 keeps its records elsewhere) has no known copy. The
graph may then read it under a tensor nobody can name, and a walk that misses a product's
weight reads past the product, so such a parameter is *unsure*: the caller must not trust the
reading unless the graph holds the parameter itself (a DTensor computed with as it is).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..algorithms.shards import is_dtensor


@dataclass
class GraphTensors:
    #: ``id`` of a tensor the graph may hold -> the name of the parameter it stands for
    names: dict[int, str] = field(default_factory=dict)
    #: parameter name -> why the tensor the graph holds for it is unknown
    unsure: dict[str, str] = field(default_factory=dict)


def graph_tensors(params: Mapping[str, torch.Tensor], model: torch.nn.Module) -> GraphTensors:
    """The graph's tensors for ``params`` (name -> the optimizer's parameter) of ``model``."""
    found = GraphTensors(names={id(p): name for name, p in params.items()})
    sharded = {name: p for name, p in params.items() if is_dtensor(p)}
    if not sharded:
        return found
    copies, problem = _fsdp_copies(model)
    for name, param in sharded.items():
        if problem is not None:
            found.unsure[name] = problem
        elif id(param) not in copies:
            found.unsure[name] = "no FSDP2 unit of the model holds it (sharded by something " \
                                 "other than fully_shard?)"
        elif copies[id(param)] is None:
            continue  # never gathered, so no forward has computed with it
        elif tuple(copies[id(param)].shape) != tuple(param.shape):
            found.unsure[name] = (f"FSDP2's unsharded copy has shape "
                                  f"{tuple(copies[id(param)].shape)}, the parameter "
                                  f"{tuple(param.shape)}")
        else:
            found.names[id(copies[id(param)])] = name
    return found


def _fsdp_copies(model: torch.nn.Module) -> tuple[dict[int, torch.Tensor | None], str | None]:
    """``id(sharded parameter) -> its unsharded copy`` (None before the first gather) over the
    FSDP2 units of ``model``; or the reason they cannot be read."""
    from torch.distributed.fsdp import FSDPModule

    copies: dict[int, torch.Tensor | None] = {}
    for module in model.modules():
        if not isinstance(module, FSDPModule):
            continue
        try:
            state = module._get_fsdp_state()
            groups = getattr(state, "_fsdp_param_groups", None)
            if groups is None:  # torch 2.11: one param group per unit, or None
                groups = [group for group in (state._fsdp_param_group,) if group is not None]
            for group in groups:
                for fsdp_param in group.fsdp_params:
                    copies[id(fsdp_param.sharded_param)] = getattr(fsdp_param, "_unsharded_param",
                                                                   None)
        except AttributeError as error:
            return {}, (f"torch {torch.__version__} keeps FSDP2's parameter records where this "
                        f"package does not read them ({error})")
    return copies, None
