"""Which layers produce a model's outputs, read from its structure (no forward pass).

A *head* is a module whose class name ends in ``Head`` (OpenMMLab, torchvision), or a
classifier module that a timm model names (``pretrained_cfg['classifier']``,
``get_classifier()``); each layer belongs to its innermost head. Inside a head, a layer is
*hidden* when a later layer of an enclosing ``nn.Sequential`` follows it, or when another layer
of the same head reads its output width; otherwise it is a *final predictor*. A model with no
head has one output layer: its last layer, when no layer reads its width. docs/routing.md has
the rule with examples.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from torch import nn

#: What a layer is, for Muon routing.
PREDICTOR, HIDDEN, OUTSIDE = "predictor", "hidden", "outside"


@dataclass(frozen=True)
class Layer:
    """A module that owns a parameter with >= 2 dims."""
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
    kind: str  # PREDICTOR, HIDDEN or OUTSIDE (not in any head)
    head: str | None  # path of the innermost head, None outside heads
    head_label: str | None  # its class name, or "timm classifier"
    detail: str  # why, in words
    by_width: bool = False  # HIDDEN only because a width matches: the weakest evidence


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


def _inside(path: str, ancestor: str) -> bool:
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


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
    """Every module owning a >= 2-dim parameter, frozen or not, in registration order."""
    layers = []
    for path, module in model.named_modules():
        if any(p.ndim >= 2 for p in module.parameters(recurse=False)):
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
    """Heads, layers and who-reads-whom for one model; ``role(path)`` per layer."""

    def __init__(self, model: nn.Module):
        self.modules = dict(model.named_modules())
        self.layers = find_layers(model)
        # a head without layers (a timm backbone's Identity classifier) is no head
        self.heads = {head: label for head, label in find_heads(model).items()
                      if any(_inside(layer.path, head) for layer in self.layers)}
        self.by_path = {layer.path: layer for layer in self.layers}
        self.head_of = {layer.path: self._innermost_head(layer.path) for layer in self.layers}
        self.output_layer = self._model_output_layer()
        self._reads = Counter(width for layer in self.layers for width in layer.reads)
        self._linear_reads = Counter(layer.reads[0] for layer in self.layers if layer.is_linear)

    def _innermost_head(self, path: str) -> str | None:
        owners = [head for head in self.heads if _inside(path, head)]
        return max(owners, key=len) if owners else None

    def _sequential_follower(self, layer: Layer, head: str) -> Layer | None:
        """The next layer after ``layer`` in an enclosing nn.Sequential inside ``head``.

        A Sequential used as a plain container (mmpretrain's DeiTClsHead keeps its two
        classifiers in one) is told apart by widths: the next layer must be able to read.
        """
        parts = layer.path.split(".")
        for depth in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:depth])
            if not _inside(parent, head):
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
        """Layers that can read ``layer``'s output: in its head when ``within`` names it."""
        return [other for other in self.layers if reads_output(other, layer)
                and (within is None or self.head_of[other.path] == within)]

    def feeds_nothing(self, layer: Layer) -> bool:
        """No other layer of the model reads ``layer``'s output, even split into equal chunks
        (a fused qkv projection is read a third at a time). False where widths are unknown."""
        if layer.writes is None:
            return False
        reads = self._reads - Counter(layer.reads)
        if any(layer.writes % width == 0 for width in reads):
            return False
        linear_reads = self._linear_reads - Counter(layer.reads if layer.is_linear else ())
        return not (layer.is_conv and any(width > layer.writes and width % layer.writes == 0
                                          for width in linear_reads))

    def role(self, path: str) -> Role:
        layer, head = self.by_path[path], self.head_of[path]
        if head is None:
            return Role(OUTSIDE, None, None, "")
        label = self.heads[head]
        follower = self._sequential_follower(layer, head)
        if follower is not None:
            return Role(HIDDEN, head, label, f"followed by {follower.path} in a Sequential")
        if layer.writes is None:
            return Role(HIDDEN, head, label, "its output stays inside the module")
        readers = self.readers(layer, within=head)
        if readers:
            return Role(HIDDEN, head, label, f"its output width {layer.writes} is read by "
                                             f"{readers[0].path}", by_width=True)
        return Role(PREDICTOR, head, label,
                    f"no layer of the head reads its {layer.writes}-wide output")

    def _model_output_layer(self) -> Layer | None:
        """For a model without heads: its last layer, if no layer reads its output."""
        if self.heads or not self.layers:
            return None
        last = self.layers[-1]
        return None if last.writes is None or self.readers(last) else last
