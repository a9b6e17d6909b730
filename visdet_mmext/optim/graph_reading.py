"""What a loss's autograd graph says about each parameter: the evidence traced routing trusts.

One walk of ``loss.grad_fn`` (torch only). For every trainable parameter with >= 2 dims it notes
how the graph uses it, as bits (so ranks can combine readings with one all-reduce):

- ``LINEAR``: the weight operand of a matrix product or a convolution (``mm``, ``addmm``,
  ``bmm``, ``linear``, ``convolution`` nodes), directly or through ops on parameters alone
  (a transpose, a chunk of a fused projection, weight normalisation);
- ``TABLE``: read as data: by an index, gather or embedding op (an embedding, a bias table),
  combined element-wise with data (an added position table, a concatenated token, a layer
  scale), or as the data operand of a product (learned queries fed to a layer);
- ``OTHER``: read by any other op (a custom autograd function): no verdict;
- ``FIRST``: a product on some path back from the loss with no product before it, views,
  parameter-free ops and non-matrix parameters passed through: a final predictor;
- ``STEM``: a product whose data operand carries no gradient and is the network's input, or a
  padded or cast copy of it (same batch and channel sizes), parallel branches included;
- ``DEPTHWISE``: a convolution with one input channel per group.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

REACHED, LINEAR, TABLE, OTHER, FIRST, STEM, DEPTHWISE = (1 << i for i in range(7))
BITS = DEPTHWISE.bit_length()
#: Autograd node names (``AddmmBackward0`` -> ``Addmm``) of matrix products and convolutions.
PRODUCTS = frozenset({
    "Mm", "Addmm", "Bmm", "Baddbmm", "Addbmm", "Mv", "Addmv", "Dot", "Linear", "MkldnnLinear",
    "Convolution", "ConvolutionOverrideable", "MkldnnConvolution", "CudnnConvolution",
    "CudnnConvolutionTranspose", "MiopenConvolution", "SlowConv2D", "SlowConvTranspose2D",
    "SlowConvTranspose3D", "SlowConvDilated2D", "SlowConvDilated3D", "ConvDepthwise2D",
    "ConvDepthwise3D", "ThnnConv2D",
})
INDEX_OPS = frozenset({"Embedding", "EmbeddingBag", "EmbeddingDense", "Index", "IndexSelect",
                       "Gather", "Take", "TakeAlongDim"})
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Cat", "Stack", "Where", "Addcmul",
                             "Addcdiv", "Lerp", "MaskedFill", "CopySlices", "IndexPut"})
#: Operand position of the weight in each product's node (``addmm(bias, x, w.t())``,
#: ``mm(x, w.t())``; convolutions: 1); elsewhere, or where that operand is data, the parameter.
WEIGHT_SLOT = {"Addmm": 2, "Mm": 1, "Bmm": 1, "Baddbmm": 2, "Addbmm": 2, "Mv": 0, "Addmv": 1,
               "Linear": 1, "MkldnnLinear": 1}
#: Saved operands of a product, by the attribute names autograd gives them.
_SAVED_OPERANDS = ("_saved_input", "_saved_self", "_saved_mat1", "_saved_mat2", "_saved_batch1",
                   "_saved_batch2", "_saved_vec")
#: A subgraph of parameters alone (weight normalisation, a transposed chunk) is at most this big.
_PARAM_ONLY_NODES = 32
_SUFFIX = re.compile(r"Backward\d*$")


def op_name(node) -> str:
    return _SUFFIX.sub("", type(node).__name__)


@dataclass
class GraphReading:
    """The bits of every matrix the graph reaches, by parameter name."""
    bits: dict[str, int] = field(default_factory=dict)
    #: a product was seen reading the network input, so the STEM bits are a verdict (an absent
    #: bit says "no stem")
    stems_known: bool = False

    def mark(self, name: str, bit: int) -> None:
        self.bits[name] = self.bits.get(name, 0) | bit | REACHED


class _Walk:
    def __init__(self, params: Mapping[int, torch.Tensor], names: Mapping[int, str],
                 inputs: tuple[set[int], set[tuple]]):
        self.params = params
        self.names = {i: names[i] for i in params}
        self.inputs = inputs  # the inputs' storages, and their (ndim, batch, channels)
        self.leaves: dict[object, tuple[frozenset, frozenset] | None] = {}
        self.reading = GraphReading()
        self.readers: list[tuple[list[str], bool]] = []  # products reading gradient-free data

    def param_only(self, node) -> tuple[frozenset, frozenset] | None:
        """``(matrix ids, op names)`` when ``node`` computes from parameters alone, without a
        product (a transpose, a chunk, weight normalisation), else None."""
        if node in self.leaves:
            return self.leaves[node]
        found, ops, todo, seen = set(), set(), [node], set()
        result = None
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if len(seen) > _PARAM_ONLY_NODES:
                break
            if hasattr(current, "variable"):  # AccumulateGrad: a leaf that wants a gradient
                if id(current.variable) in self.params:
                    found.add(id(current.variable))
                continue
            inputs = kids(current)
            # a tensor without gradient is data; a product of parameters is a layer at work
            if not inputs or None in inputs or op_name(current) in PRODUCTS:
                break
            ops.add(op_name(current))
            todo.extend(inputs)
        else:
            result = (frozenset(found), frozenset(ops))
        self.leaves[node] = result
        return result

    def visit(self, node, open_path: bool, again: bool) -> tuple[list, bool]:
        """Note what ``node`` does with parameters (``again``: only what an open path adds);
        return the kids to walk and whether their paths are still open (no product yet)."""
        op = op_name(node)
        operands = [(kid, None if kid is None else self.param_only(kid)) for kid in kids(node)]
        data = [kid for kid, found in operands if found is None]
        held = [(slot, found) for slot, (_, found) in enumerate(operands) if found and found[0]]
        weight = None
        if op in PRODUCTS and held:
            slot = WEIGHT_SLOT.get(op, 1 if op.startswith(("Conv", "Slow", "Thnn", "Mkldnn",
                                                           "Cudnn", "Miopen")) else None)
            weight = next((found for at, found in held if at == slot), held[0][1])
            if weight[1] & INDEX_OPS:  # rows picked from a table, then multiplied: a table
                weight = None
        product = weight is not None
        if product and open_path:
            for i in weight[0]:
                self.reading.mark(self.names[i], FIRST)
        if not again:
            for _, found in held:
                for i in found[0]:
                    name = self.names[i]
                    if found is weight:
                        self.reading.mark(name, LINEAR)
                        if getattr(node, "_saved_groups", 1) > 1 and self.params[i].shape[1] == 1:
                            self.reading.mark(name, DEPTHWISE)
                    elif found[1] & INDEX_OPS or op in INDEX_OPS or op in ELEMENTWISE_OPS or \
                            op in PRODUCTS:
                        self.reading.mark(name, TABLE)
                    else:
                        self.reading.mark(name, OTHER)
            if product and data and all(kid is None for kid in data):
                self.readers.append((sorted(self.names[i] for i in weight[0]),
                                     self._reads_input(node)))
        return [kid for kid in data if kid is not None], open_path and not product

    def _reads_input(self, node) -> bool:
        for attribute in _SAVED_OPERANDS:
            try:
                saved = getattr(node, attribute, None)
            except RuntimeError:  # saved tensors are freed after backward: cannot tell
                return False
            if isinstance(saved, torch.Tensor) and (
                    saved.untyped_storage().data_ptr() in self.inputs[0]
                    or (saved.ndim, *saved.shape[:2]) in self.inputs[1]):
                return True
        return False


#: Identity nodes that pass several tensors at once, output i being input i: the one
#: DistributedDataParallel puts on a model's outputs, the one FSDP2 puts on each unit's inputs.
_IDENTITIES = frozenset({"_DDPSink", "RegisterPostBackwardFunction"})


def _through(node, index: int):
    """``node`` reached through its output ``index``; through an identity of several tensors,
    only that output's own input (not the others')."""
    while node is not None and op_name(node) in _IDENTITIES:
        node, index = node.next_functions[index]
    return node


def kids(node) -> list:
    """The nodes ``node`` takes gradients to (None for an input without gradient)."""
    return [_through(kid, index) for kid, index in node.next_functions]


def read_graph(roots: Iterable, params: Mapping[int, torch.Tensor], names: Mapping[int, str],
               inputs: Iterable[torch.Tensor] = ()) -> GraphReading:
    """Read the graph below ``roots`` (tensors or autograd nodes) for ``params`` (id -> tensor:
    the trainable matrices; ``names``: id -> name). ``inputs``: the network's input tensors, to
    tell the stem (without them, or once backward has freed the saved tensors, no verdict)."""
    inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.numel()]
    # a padded or cast copy is recognised by its batch and channels, for images and sequences
    walk = _Walk(params, names, ({t.untyped_storage().data_ptr() for t in inputs},
                                 {(t.ndim, *t.shape[:2]) for t in inputs if t.ndim >= 3}))
    nodes = [_through(root.grad_fn, root.output_nr) if isinstance(root, torch.Tensor) else root
             for root in roots]
    seen: dict[object, bool] = {}  # node -> walked on an open path
    todo = [(node, True) for node in nodes if node is not None]
    while todo:
        node, open_path = todo.pop()
        again = node in seen
        if again and (seen[node] or not open_path):
            continue
        seen[node] = open_path
        if hasattr(node, "variable"):
            continue
        kids, still_open = walk.visit(node, open_path, again)
        todo.extend((kid, still_open) for kid in kids)
    reading = walk.reading
    # known only when some product was seen reading the input: else it hides (patches cut into
    # a new tensor before a Linear), and the structural stem stands
    reading.stems_known = any(reads_input for _, reads_input in walk.readers)
    for group, reads_input in walk.readers:
        for name in group if reads_input else ():
            reading.mark(name, STEM)
    return reading
