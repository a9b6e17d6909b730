"""Muon routing corrected from the loss's graph at the first backward, before any step.

The package constructor routes from structure and reserves, for each parameter the graph may
move, a param group on the other side with the same ``paramwise_cfg`` settings (groups with equal
settings are shared, so usually none is added). This watches the first training step:

- ``OptimWrapper.backward`` (so ``update_params``) hands it the loss: the graph is read there;
- in a plain loop (``loss.backward(); optimizer.step()``), the first ``optimizer.step`` reads the
  graph of the model's output that the backward used (a ``loss`` entry when the model returns
  one);
- the model's forward shows it the network input (to tell the stem).

The graph holds the tensors the forward computed with: the parameters themselves, or, under
FSDP2, the unsharded copies FSDP2 gathers into (``graph_params`` names them from FSDP2's own
records). Then the ranks combine their readings (bitwise OR, one all-reduce), parameters move to
their traced side while the optimizer state is still empty (exact, nothing lost), each move is
logged with the ``paramwise_cfg.muon`` pattern that pins it, and the hooks are removed. The optimizer's
state dict records the moves; loading one applies them first (a resume keeps the routing it was
trained with, and says so if this run's graph disagrees). Where an engine fixed the groups
already (DeepSpeed ZeRO), nothing moves: the log says what the graph found and how to pin it.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping

import torch
from mmengine.logging import print_log

from . import graph_reading as graph
from .graph_params import graph_tensors
from .grouping_check import RECORD_KEY
from .routing import Retrace, Routing, pin_lines, retrace

#: Entry of ``state_dict()[RECORD_KEY]`` holding the routing in force.
ROUTING = "routing"
ARMED, DONE, RESUMED = "armed", "done", "resumed"


def _log(message: str, level=logging.INFO) -> None:
    print_log(f"Muon routing: {message}", logger="current", level=level)


def tensors_in(value) -> list[torch.Tensor]:
    """Tensors in a forward's inputs or outputs (nested tuples, lists, dicts, ModelOutputs)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in tensors_in(item)]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in tensors_in(item)]
    return []


def _loss_entries(output) -> list[torch.Tensor]:
    """The loss tensors of a model's output: ``loss*`` entries of a mapping, or a scalar."""
    if isinstance(output, Mapping):
        found = [t for key, item in output.items() if "loss" in str(key) for t in tensors_in(item)]
        if found:
            return found
    return [t for t in tensors_in(output) if t.ndim == 0]


def _independent(nodes: list) -> list:
    """The nodes that no other node of ``nodes`` reaches (an output computed from another
    output is read through it)."""
    wanted, reached, seen = set(nodes), set(), set()
    todo = [kid for node in nodes for kid in graph.kids(node) if kid is not None]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in wanted:
            reached.add(node)
        todo.extend(kid for kid in graph.kids(node) if kid is not None)
    return [node for node in nodes if node not in reached]


class TracedRouting:
    """Watches one optimizer's first step; see the module docstring."""

    def __init__(self, optimizer, model, routing: Routing, alternates: dict[str, int],
                 fixed: bool = False):
        self.optimizer = optimizer
        self.structural = routing
        self.routing = routing  # in force: the structural one, then the traced one
        self.alternates = alternates  # name -> index of its group on the other side
        self.fixed = fixed
        self.state = ARMED
        self.moved: dict[str, bool] = {}  # name -> side now, for parameters the graph moved
        self.params: dict[str, torch.Tensor] = {}
        for group in optimizer.param_groups:
            self.params.update(zip(group.get("param_names", ()), group["params"]))
        routes = routing.by_name()
        self.matrices = {name: p for name, p in self.params.items()
                         if name in routes and len(routes[name].shape) >= 2}
        self.model = model
        self.unsure: dict[str, str] = {}  # matrices the last reading may have missed: why
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        self.fired: set = set()
        self.forward_reading: graph.GraphReading | None = None
        self.wrapper = None
        self.watching = [model.register_forward_pre_hook(self._forward_pre, with_kwargs=True),
                         model.register_forward_hook(self._forward, with_kwargs=True),
                         optimizer.register_step_pre_hook(self._step_pre)]
        # these stay: a checkpoint saved or loaded later records or applies the routing
        optimizer.register_load_state_dict_pre_hook(self._adopt, prepend=True)
        optimizer.register_state_dict_post_hook(self._record)

    def watch(self, wrapper) -> None:
        """Read the loss at the wrapper's first ``backward`` (``update_params`` calls it)."""
        self.wrapper = wrapper
        original = wrapper.backward

        def backward(loss, **kwargs):
            if self.state != DONE:
                self.at_backward(loss)
            return original(loss, **kwargs)

        wrapper.backward = backward

    # -- hooks -----------------------------------------------------------------------------
    def _forward_pre(self, module, args, kwargs):
        if torch.is_grad_enabled():
            self.inputs = tensors_in((args, kwargs))

    def _forward(self, module, args, kwargs, output):
        if not torch.is_grad_enabled() or not module.training:
            return
        tensors = [t for t in _loss_entries(output) or tensors_in(output) if t.grad_fn is not None]
        if not tensors:
            return
        self.outputs, self.fired = tensors, set()
        for tensor in tensors:
            tensor.grad_fn.register_prehook(lambda grads, node=tensor.grad_fn: self.fired.add(node))
        # the saved tensors that tell the stem are freed by the backward: read them now
        self.forward_reading = self._read(tensors)

    def _step_pre(self, optimizer, args, kwargs):
        """A plain loop: read the outputs the backward used (no wrapper saw the loss)."""
        nodes = [t.grad_fn for t in self.outputs if t.grad_fn in self.fired]
        if not nodes:
            self._stop("no training forward of the model reached the first step's backward, so "
                       "the loss graph cannot be read; the structural routing stays")
            return
        reading = self._read(_independent(nodes), with_inputs=False)
        reading.stems_known = self.forward_reading.stems_known
        for name, bits in self.forward_reading.bits.items():
            if bits & graph.STEM:
                reading.mark(name, graph.STEM)
        self._conclude(reading)

    def at_backward(self, loss) -> None:
        if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
            self._stop("the loss has no autograd graph (computed under no_grad?), so the "
                       "structural routing stays")
            return
        self._conclude(self._read([loss]))

    # -- reading and deciding -------------------------------------------------------------
    def _read(self, roots, with_inputs: bool = True) -> graph.GraphReading:
        held = graph_tensors(self.matrices, self.model)
        tensors = {i: self.matrices[name] for i, name in held.names.items()}
        reading = graph.read_graph(roots, tensors, held.names, self.inputs if with_inputs else ())
        # a matrix whose graph tensor is unknown is sure after all where the graph holds it itself
        self.unsure = {name: why for name, why in held.unsure.items()
                       if not reading.bits.get(name, 0) & graph.REACHED}
        return reading

    def _combined(self, reading: graph.GraphReading) -> tuple[dict[str, int], bool, bool] | None:
        """Every rank's bits, whether it knew the stems and whether some matrix's graph tensor
        was unknown, OR-ed (max per bit) in one all-reduce; this rank's alone when not
        distributed; None when the ranks route different parameters."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()
                and torch.distributed.get_world_size() > 1):
            return reading.bits, reading.stems_known, bool(self.unsure)
        names = sorted(self.matrices)
        device = torch.device("cpu")
        if torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        signature = zlib.crc32("\n".join(names).encode()) - (1 << 31)
        rows = [[bool(reading.bits.get(name, 0) & (1 << b)) for b in range(graph.BITS)]
                for name in names]
        rows.append([reading.stems_known] * graph.BITS)
        rows.append([bool(self.unsure)] * graph.BITS)
        rows.append([signature, -signature] + [0] * (graph.BITS - 2))
        table = torch.tensor(rows, dtype=torch.int64, device=device)
        torch.distributed.all_reduce(table, op=torch.distributed.ReduceOp.MAX)
        table = table.cpu().tolist()
        if table[-1][0] != -table[-1][1]:
            return None
        bits = {name: sum(1 << b for b, on in enumerate(row) if on)
                for name, row in zip(names, table)}
        return bits, bool(table[-3][0]), bool(table[-2][0])

    def _conclude(self, reading: graph.GraphReading) -> None:
        combined = self._combined(reading)
        if combined is None:
            self._stop("the ranks route different parameters, so their loss graphs cannot be "
                       "combined; the structural routing stays (every rank must build the same "
                       "model)")
            return
        bits, known, unsure = combined
        if unsure:
            shown = "; ".join(f"{name}: {why}" for name, why in list(self.unsure.items())[:5])
            self._stop(f"the loss graph computes with copies of sharded parameters that cannot "
                       f"be matched to the optimizer's ({shown or 'on another rank'}), so the "
                       "structural routing stays. `visdet-mmext groups CONFIG --trace` shows the "
                       "loss graph's routing on the unsharded model and how to pin it")
            return
        if not any(bits.get(name, 0) & graph.REACHED for name in self.matrices):
            self._stop("the loss graph reaches none of the optimizer's matrices (a wrapper that "
                       "computes with copies of the parameters?), so the structural routing "
                       "stays")
            return
        result = retrace(self.structural, bits, known)
        if self.state == RESUMED:
            self._compare(result)
        elif self.fixed:
            self._report_fixed(result)
        else:
            self._move(result)
        if result.unreached and self.state == ARMED:
            _log(f"the loss does not reach {len(result.unreached)} matrix tensor(s) in the first "
                 f"step; they keep the structural routing: {', '.join(result.unreached)}",
                 logging.WARNING)
        self._stop()

    def _move(self, result: Retrace) -> None:
        names = list(self.params)
        for route in result.moved:
            if self.optimizer.state.get(self.params[route.name]):
                _log(f"{route.name} keeps its side: it has optimizer state already, and moving it "
                     "would lose that", logging.WARNING)
                continue
            self._place(route.name, route.use_muon)
            _log(f"{route.name} moved to {route.side}: {route.reason}. To keep it there without "
                 f"the loss graph: paramwise_cfg.muon {pin_lines([route], names)[0]}")
        self.routing = result.routing
        if result.moved:
            _log(f"after the loss graph: {result.routing.summary()}. To pin the whole traced "
                 f"routing: paramwise_cfg.muon=dict({', '.join(pin_lines(result.moved, names))})")
        else:
            _log("the loss graph agrees with the structural routing")

    def side(self, name: str) -> bool:
        """The side ``name`` trains on now, read from its param group."""
        param = self.params[name]
        return bool(next(g for g in self.optimizer.param_groups
                         if any(p is param for p in g["params"])).get("use_muon"))

    def _place(self, name: str, use_muon: bool) -> None:
        """Move ``name`` to its group on the ``use_muon`` side (a no-op when it is there)."""
        groups, param = self.optimizer.param_groups, self.params[name]
        source = next(i for i, g in enumerate(groups) if any(p is param for p in g["params"]))
        if bool(groups[source].get("use_muon")) == use_muon:
            return
        target = self.alternates[name]
        at = next(i for i, p in enumerate(groups[source]["params"]) if p is param)
        del groups[source]["params"][at], groups[source]["param_names"][at]
        groups[target]["params"].append(param)
        groups[target]["param_names"].append(name)
        self.alternates[name] = source
        structural = self.structural.by_name()[name].use_muon
        if use_muon == structural:
            self.moved.pop(name, None)
        else:
            self.moved[name] = use_muon

    def _report_fixed(self, result: Retrace) -> None:
        if not result.moved:
            _log("the loss graph agrees with the structural routing")
            return
        for route in result.moved:
            _log(f"the loss graph would move {route.name} to {route.side}: {route.reason}",
                 logging.WARNING)
        _log(f"the engine fixed the param groups before the first step (DeepSpeed ZeRO), so the "
             f"structural routing stays. To train with the traced routing, set "
             f"paramwise_cfg.muon=dict({', '.join(pin_lines(result.moved, list(self.params)))})",
             logging.WARNING)

    def _compare(self, result: Retrace) -> None:
        differ = [route for route in result.routing.routes
                  if route.name in self.alternates and route.name not in result.unreached
                  and self.side(route.name) != route.use_muon]
        if differ:
            shown = "; ".join(f"{r.name} -> {r.side} ({r.reason})" for r in differ[:10])
            _log(f"this run's loss graph disagrees with the checkpoint's routing for "
                 f"{len(differ)} tensor(s): {shown}. Training continues with the checkpoint's "
                 "routing, which its optimizer state belongs to.", logging.WARNING)

    def _stop(self, why_not: str | None = None) -> None:
        if why_not is not None and self.state == ARMED:
            _log(why_not, logging.WARNING)
        self.state = DONE
        for handle in self.watching:
            handle.remove()
        self.watching = []
        if self.wrapper is not None and "backward" in vars(self.wrapper):
            del self.wrapper.backward
        self.inputs, self.outputs, self.fired, self.forward_reading = [], [], set(), None
        self.model = None

    # -- checkpoints ----------------------------------------------------------------------
    def _record(self, optimizer, state_dict):
        state_dict.setdefault(RECORD_KEY, {})[ROUTING] = {
            "settled": self.state != ARMED, "moved": dict(self.moved)}
        return state_dict

    def _adopt(self, optimizer, state_dict):
        self.adopt(state_dict)
        return None

    def adopt(self, state_dict: dict) -> None:
        """Before the state is loaded: put every parameter where the checkpoint had it (the
        optimizer's load hook; a caller that reads the state by position calls it first)."""
        record = (state_dict.get(RECORD_KEY) or {}).get(ROUTING)
        if record is None and not state_dict.get("state"):
            return  # nothing trained yet: the loss graph may still decide
        moved = dict(record.get("moved", {})) if record else {}
        structural = self.structural.by_name()
        for name in self.alternates:
            self._place(name, moved.get(name, structural[name].use_muon))
        if self.state == ARMED and (record is None or record.get("settled")):
            self.state = RESUMED
            _log(f"resumed with the checkpoint's routing ({len(self.moved)} tensor(s) moved from "
                 "the structural one by its loss graph); this run's graph is only compared")


def attach(wrapper, model, routing: Routing, alternates: dict[str, int],
           fixed: bool) -> TracedRouting:
    """Watch ``wrapper``'s optimizer (and ``model``'s forward) for the first step."""
    traced = TracedRouting(wrapper.optimizer, model, routing, alternates, fixed)
    traced.watch(wrapper)
    wrapper.optimizer.traced_routing = traced
    return traced
