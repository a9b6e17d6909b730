"""Which layers produce a model's outputs, read from its structure (no forward pass).

This is the routing before the first step (and where groups are fixed earlier); the loss graph
(``graph_reading``) corrects it at the first backward. docs/routing.md has the rule with
examples.

A *layer* owns a weight that acts as a linear map: a Linear, a conv, an attention's projection,
or the ``weight`` of any other leaf module. Any other parameter with >= 2 dims (a position or
bias table, a token, a scale) is a *table*, whatever its name.

An *output head* is a module whose class name ends in ``Head`` (OpenMMLab, torchvision, Hugging
Face) or a classifier a timm model names, that hangs off the model directly: none of its
ancestors is something else than a head or a container (a head inside a decoder, such as a
query-position MLP, is an ordinary block). Inside an output head a layer is *hidden* when a later
layer of an enclosing ``nn.Sequential`` follows it or another layer of the head reads its width;
else it is a *final predictor*. Outside output heads a layer is an *output* when
no layer of the model reads its width and no layer beside it in its module (a sibling registered
after it, whose own output is read) shows it to be an intermediate result, such as the sampling
offsets of a deformable attention.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

#: What a layer is, for Muon routing.
PREDICTOR, HIDDEN, OUTSIDE = "predictor", "hidden", "outside"
#: Modules whose matrices are linear maps, known by class (other leaf modules: their ``weight``).
LINEAR_MAPS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.MultiheadAttention)
TABLES = (nn.Embedding, nn.EmbeddingBag)
CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


@dataclass(frozen=True)
class Layer:
    """A module that owns a weight acting as a linear map."""
    path: str
    module: nn.Module
    reads: tuple[int, ...]  # widths it reads: in_features / in_channels / attention dims
    writes: int | None  # width it writes, None where the module does not say

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.modules.conv._ConvNd)

    @property
    def is_linear(self) -> bool:
        return isinstance(self.module, nn.Linear)


@dataclass(frozen=True)
class Role:
    kind: str  # PREDICTOR, HIDDEN or OUTSIDE (outside output heads: see ``output``)
    head: str | None  # path of the innermost output head, None outside
    head_label: str | None  # its class name, or "timm classifier"
    detail: str  # why, in words
    by_width: bool = False  # HIDDEN only because a width matches: the weakest evidence
    output: bool = False  # OUTSIDE and no layer reads its output: an output of the model


def _widths(module: nn.Module) -> tuple[tuple[int, ...], int | None]:
    if isinstance(module, nn.Linear):
        return (module.in_features,), module.out_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return (module.in_channels,), module.out_channels
    if isinstance(module, nn.MultiheadAttention):  # its output leaves through out_proj, a Linear
        return tuple({module.embed_dim, module.kdim, module.vdim}), None
    return (), None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _inside(path: str, ancestor: str) -> bool:
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def is_table(module: nn.Module, local_name: str) -> bool:
    """A parameter with >= 2 dims that is no layer's linear map (embeddings, position and bias
    tables, tokens, scales): held by an embedding, or by a module that is no known layer and
    either has sub-modules or does not call it ``weight``."""
    if isinstance(module, TABLES):
        return True
    if isinstance(module, LINEAR_MAPS):
        return False
    return bool(module._modules) or local_name != "weight"


def owns_linear_map(module: nn.Module) -> bool:
    return any(p.ndim >= 2 and not is_table(module, name)
               for name, p in module.named_parameters(recurse=False))


def find_heads(model: nn.Module) -> dict[str, str]:
    """Head path -> label: ``*Head`` classes and the classifier modules timm models name."""
    modules = dict(model.named_modules())
    paths = {id(module): path for path, module in modules.items()}
    heads = {}
    for path, module in modules.items():
        if type(module).__name__.endswith("Head"):
            heads[path] = type(module).__name__
        cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
        if not isinstance(cfg, dict):
            continue  # not a timm model
        names = cfg.get("classifier") or ()
        for name in (names,) if isinstance(names, str) else names:
            if _join(path, name) in modules:
                heads[_join(path, name)] = "timm classifier"
        getter = getattr(module, "get_classifier", None)
        found = getter() if callable(getter) else ()
        for classifier in found if isinstance(found, (tuple, list)) else (found,):
            if id(classifier) in paths and paths[id(classifier)] != path:
                heads[paths[id(classifier)]] = "timm classifier"
    return heads


def find_layers(model: nn.Module) -> list[Layer]:
    """Every module owning a linear map, frozen or not, in registration order."""
    layers = []
    for path, module in model.named_modules():
        if owns_linear_map(module):
            layers.append(Layer(path, module, *_widths(module)))
    return layers


def reads_output(reader: Layer, writer: Layer) -> bool:
    """Whether ``reader`` can take ``writer``'s output, judged by widths.

    A Linear also reads a conv's flattened map (in_features a multiple of its channels).
    """
    if reader is writer or writer.writes is None:
        return False
    if writer.writes in reader.reads:
        return True
    return (writer.is_conv and reader.is_linear and reader.reads[0] > writer.writes
            and reader.reads[0] % writer.writes == 0)


class Structure:
    """Output heads, layers, the stem and who-reads-whom for one model; ``role(path)`` per
    layer. ``stem``: "auto" (below), a glob on module paths, or "none"."""

    def __init__(self, model: nn.Module, stem: str = "auto"):
        self.modules = dict(model.named_modules())
        self.layers = find_layers(model)
        self.by_path = {layer.path: layer for layer in self.layers}
        self.stems = self._stems(stem)
        found = find_heads(model)
        # a head without layers (a timm backbone's Identity classifier) is no head, nor is a
        # head inside a block that is no head (a query-position MLP inside a decoder)
        self.heads = {head: label for head, label in found.items()
                      if any(_inside(layer.path, head) for layer in self.layers)
                      and self._hangs_off_the_model(head, found)}
        self.head_of = {layer.path: self._innermost_head(layer.path) for layer in self.layers}

    def _stems(self, rule: str) -> set[str]:
        """The layers that read the input: the first layer in registration order (none when an
        embedding comes first) and the parallel branches beside it, which read the same widths
        (RepVGG, MobileOne)."""
        if rule == "none":
            return set()
        if rule != "auto":
            return {layer.path for layer in self.layers
                    if any(fnmatch.fnmatchcase(prefix, rule) for prefix in _prefixes(layer.path))}
        first = next((path for path, module in self.modules.items()
                      if isinstance(module, TABLES) or path in self.by_path), None)
        if first not in self.by_path:
            return set()
        stem = self.by_path[first]
        block = self.unit(stem)
        while "." in block:
            parent = _parent(block)
            if any(layer.reads != stem.reads for layer in self.layers_in(parent)):
                break
            block = parent
        return {layer.path for layer in self.layers_in(block)}

    def _hangs_off_the_model(self, head: str, heads) -> bool:
        parts = head.split(".")
        ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
        return all(a in heads or isinstance(self.modules[a], CONTAINERS) for a in ancestors)

    def _innermost_head(self, path: str) -> str | None:
        owners = [head for head in self.heads if _inside(path, head)]
        return max(owners, key=len) if owners else None

    def layers_in(self, prefix: str) -> list[Layer]:
        return [layer for layer in self.layers if _inside(layer.path, prefix)]

    def unit(self, layer: Layer) -> str:
        """The largest module around ``layer`` holding no other layer (a conv-norm-act wrapper),
        below the root and outside containers."""
        path = layer.path
        while path and "." in path:
            parent = _parent(path)
            if isinstance(self.modules[parent], CONTAINERS) or len(self.layers_in(parent)) > 1:
                break
            path = parent
        return path

    def _sequential_follower(self, layer: Layer, within: str) -> Layer | None:
        """The next layer after ``layer`` in an enclosing nn.Sequential inside ``within``.

        A Sequential used as a plain container (mmpretrain's DeiTClsHead keeps its two
        classifiers in one) is told apart by widths: the next layer must be able to read.
        """
        parts = layer.path.split(".")
        for depth in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:depth])
            if not _inside(parent, within):
                break
            container = self.modules[parent]
            if not isinstance(container, nn.Sequential):
                continue
            names = list(container._modules)
            later = [_join(parent, name) for name in names[names.index(parts[depth]) + 1:]]
            follower = next((other for prefix in later for other in self.layers
                             if _inside(other.path, prefix)), None)
            if follower is not None and (not follower.reads or reads_output(follower, layer)):
                return follower
        return None

    def readers(self, layer: Layer, within: str | None = None) -> list[Layer]:
        """Layers that can read ``layer``'s output (inside ``within`` when given); the stem reads
        the network's input, so its width proves nothing."""
        return [other for other in self.layers if reads_output(other, layer)
                and other.path not in self.stems and (within is None or _inside(other.path, within))]

    def _intermediate(self, layer: Layer) -> Layer | None:
        """A later sibling of ``layer``'s unit that is itself one layer whose output some layer
        reads: then ``layer`` computes something its module uses (offsets, attention weights)."""
        unit = self.unit(layer)
        parent = _parent(unit) if "." in unit else ""
        names = list(self.modules[parent]._modules)
        local = unit.rpartition(".")[2]
        if local not in names:
            return None
        for name in names[names.index(local) + 1:]:
            inside = self.layers_in(_join(parent, name))
            if len(inside) == 1 and self.readers(inside[0]):
                return inside[0]
        return None

    def role(self, path: str) -> Role:
        layer, head = self.by_path[path], self.head_of[path]
        if head is None:
            return self._outside(layer)
        label = self.heads[head]
        follower = self._sequential_follower(layer, head)
        if follower is not None:
            return Role(HIDDEN, head, label, f"followed by {follower.path} in a Sequential")
        if layer.writes is None:
            return Role(HIDDEN, head, label, "its output stays inside the module")
        # any order: heads register their predictors first (mmdet's BBoxHead) as often as last
        readers = self.readers(layer, within=head)
        if readers:
            return Role(HIDDEN, head, label, f"its output width {layer.writes} is read by "
                                             f"{readers[0].path}", by_width=True)
        return Role(PREDICTOR, head, label,
                    f"no layer of the head reads its {layer.writes}-wide output")

    def _outside(self, layer: Layer) -> Role:
        follower = self._sequential_follower(layer, "")
        if follower is not None:
            return Role(OUTSIDE, None, None, f"followed by {follower.path} in a Sequential")
        if layer.writes is None:
            return Role(OUTSIDE, None, None, "its output stays inside the module")
        readers = self.readers(layer)
        if readers:
            return Role(OUTSIDE, None, None, f"its output width {layer.writes} is read by "
                                             f"{readers[0].path}", by_width=True)
        sibling = self._intermediate(layer)
        if sibling is not None:
            return Role(OUTSIDE, None, None, f"an intermediate result: {sibling.path} follows it "
                                             "in its module")
        return Role(OUTSIDE, None, None, f"no layer reads its {layer.writes}-wide output",
                    output=True)
