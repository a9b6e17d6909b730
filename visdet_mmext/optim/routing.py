"""Which parameters Muon updates, and why: a pure function of the model and the rules.

Muon orthogonalises the update of hidden weight matrices. Everything else (embeddings, the
layer that reads the input, output heads and final predictors, depthwise convs, and every
parameter with fewer than 2 dims) stays on AdamW. Users move parameters with glob patterns
on full names or with ``custom_keys`` entries that carry ``use_muon``.

Precedence, highest first:
1. a parameter with fewer than 2 dims is always AdamW (user rules that select Muon apply to
   matrices only, so ``include=['neck.*']`` means the neck's matrices);
2. user rules: ``custom_keys`` ``use_muon`` flags, then ``include``/``exclude`` patterns;
   two user rules that disagree about one parameter raise;
3. the defaults, in the order of ``DEFAULT_REASONS`` below.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
from dataclasses import dataclass, field

from torch import nn

from ..algorithms.muon.hybrid import adamw_group, adamw_settings
from ..errors import RoutingError

#: Local module names of output layers: classifiers, LM heads and detection predictors.
HEAD_NAMES = frozenset({
    "head", "heads", "fc", "classifier", "lm_head", "logits", "output_layer", "predictor",
    "cls_score", "bbox_pred", "fc_cls", "fc_reg", "conv_cls", "conv_reg", "conv_centerness",
    "conv_obj", "retina_cls", "retina_reg", "rpn_cls", "rpn_reg", "conv_logits", "atss_cls",
    "atss_reg", "gfl_cls", "gfl_reg", "vfnet_cls", "vfnet_reg", "mask_pred",
    "multi_level_conv_cls", "multi_level_conv_reg", "multi_level_conv_obj",
})
#: Substrings of parameter names that mark embedding-like tables.
EMBEDDING_MARKS = ("embed", "pos_emb", "cls_token", "dist_token", "mask_token", "reg_token",
                   "absolute_pos", "relative_position")

MUON, ADAMW = True, False
#: Layers that can be the first to read the input (an embedding is AdamW anyway).
INPUT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class MuonRules:
    include: tuple[str, ...] = ()  # glob patterns on full parameter names -> Muon
    exclude: tuple[str, ...] = ()  # -> AdamW
    stem: str = "auto"  # "auto": first Conv/Linear/Embedding in module order; a glob; or "none"
    heads: tuple[str, ...] = tuple(sorted(HEAD_NAMES))  # local module names of output layers

    @classmethod
    def from_cfg(cls, cfg: dict | None) -> "MuonRules":
        cfg = dict(cfg or {})
        unknown = set(cfg) - {"include", "exclude", "stem", "heads"}
        if unknown:
            raise ValueError(f"paramwise_cfg.muon has unknown keys {sorted(unknown)}; valid keys: "
                             "include, exclude, stem, heads")
        for key in ("include", "exclude", "heads"):
            if isinstance(cfg.get(key), str):
                cfg[key] = (cfg[key],)
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        return cls(**cfg)


@dataclass(frozen=True)
class Route:
    name: str
    shape: tuple[int, ...]
    use_muon: bool
    reason: str

    @property
    def side(self) -> str:
        return "Muon" if self.use_muon else "AdamW"


@dataclass
class Routing:
    routes: list[Route]
    warnings: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, Route]:
        return {route.name: route for route in self.routes}

    def summary(self) -> str:
        lines = []
        for use_muon in (MUON, ADAMW):
            chosen = [r for r in self.routes if r.use_muon == use_muon]
            numel = sum(math.prod(r.shape) for r in chosen)
            lines.append(f"{'Muon' if use_muon else 'AdamW'}: {len(chosen)} tensors, "
                         f"{numel:,} parameters")
        return "; ".join(lines)

    def table(self) -> str:
        width = max((len(r.name) for r in self.routes), default=4)
        rows = [f"{'parameter':<{width}}  {'shape':<18}  side   reason"]
        rows += [f"{r.name:<{width}}  {str(tuple(r.shape)):<18}  {r.side:<5}  {r.reason}"
                 for r in self.routes]
        return "\n".join(rows)


def _matches(name: str, patterns) -> list[str]:
    return [p for p in patterns if fnmatch.fnmatchcase(name, p)]


def _owners(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Parameter name -> (owning module path, owning module)."""
    owners = {}
    for path, module in model.named_modules():
        for local, _ in module.named_parameters(recurse=False):
            owners[f"{path}.{local}" if path else local] = (path, module)
    return owners


def _is_depthwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1
            and module.in_channels == module.groups)


def _stem_path(model: nn.Module, rules: MuonRules) -> str | None:
    if rules.stem == "none":
        return None
    for path, module in model.named_modules():
        if rules.stem != "auto":
            if fnmatch.fnmatchcase(path, rules.stem):
                return path
        elif isinstance(module, INPUT_LAYERS):  # registration order = forward order, by convention
            return path
    return None


def _local_name(path: str) -> str:
    """Last component of a module path, skipping list indices (``cls_convs.0`` -> cls_convs)."""
    parts = [part for part in path.split(".") if not part.isdigit()]
    return parts[-1] if parts else ""


def _default(name, param, path, module, stem, rules) -> tuple[bool, str]:
    local = _local_name(path)
    flat = (param.shape[0], math.prod(param.shape[1:])) if param.ndim >= 2 else ()
    if param.ndim < 2:
        return ADAMW, "fewer than 2 dims"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return ADAMW, "embedding"
    if any(mark in name.lower() for mark in EMBEDDING_MARKS):
        return ADAMW, "embedding-like name"
    if stem is not None and path == stem:
        return ADAMW, "first layer: reads the input"
    if local in rules.heads:
        return ADAMW, "output head / final predictor"
    if _is_depthwise(module):
        return ADAMW, "depthwise conv"
    if min(flat) < 2:
        return ADAMW, f"degenerate matrix {flat[0]}x{flat[1]}"
    kind = "hidden conv kernel" if param.ndim > 2 else "hidden matrix"
    return MUON, kind if param.ndim == 2 else f"{kind}, flattened to {flat[0]}x{flat[1]}"


def _unused_pattern_warning(kind: str, pattern: str, names: list[str]) -> str:
    stripped = pattern.replace("*", "").replace("?", "")
    close = difflib.get_close_matches(stripped, names, n=3, cutoff=0.3)
    hint = f"; closest parameter names: {', '.join(close)}" if close else ""
    return f"muon {kind} pattern {pattern!r} matches no parameter{hint}"


def route_parameters(model: nn.Module, rules: MuonRules | None = None,
                     flags: dict[str, bool] | None = None) -> Routing:
    """Route every trainable parameter of ``model``.

    ``flags`` holds explicit per-parameter choices from ``custom_keys`` (name -> use_muon).
    """
    rules = rules or MuonRules()
    flags = flags or {}
    owners = _owners(model)
    stem = _stem_path(model, rules)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    routes, conflicts, warnings = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        path, module = owners[name]
        claims = []  # (side, why) from user rules
        if name in flags:
            claims.append((flags[name], f"custom_keys use_muon={flags[name]}"))
        claims += [(MUON, f"include {p!r}") for p in _matches(name, rules.include)]
        claims += [(ADAMW, f"exclude {p!r}") for p in _matches(name, rules.exclude)]
        if param.ndim < 2 and any(side == MUON for side, _ in claims):
            # `include='neck.*'` means the neck's matrices: vectors stay on AdamW
            why = next(why for side, why in claims if side == MUON)
            claims = [(ADAMW, f"fewer than 2 dims ({why} applies to matrices only)")]
        if len({side for side, _ in claims}) > 1:
            conflicts.append(f"{name}: " + " vs ".join(why for _, why in claims))
            continue
        if claims:
            routes.append(Route(name, tuple(param.shape), claims[0][0], claims[0][1]))
        else:
            side, why = _default(name, param, path, module, stem, rules)
            routes.append(Route(name, tuple(param.shape), side, why))
    if conflicts:
        raise RoutingError("contradictory Muon routing rules for:\n  " + "\n  ".join(conflicts))
    for kind, patterns in (("include", rules.include), ("exclude", rules.exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                warnings.append(_unused_pattern_warning(kind, pattern, names))
    if not any(route.use_muon for route in routes):
        warnings.append("no parameter is routed to Muon: every parameter trains with AdamW")
    return Routing(routes, warnings)


def assign_sides(groups: list[dict], routing: Routing, optimizer_cfg: dict, base_lr: float,
                 base_weight_decay: float | None) -> list[dict]:
    """Flag each one-parameter group with its side; AdamW-side groups get the AdamW settings,
    scaled by the same ``paramwise_cfg`` multipliers (``algorithms.muon.hybrid``)."""
    base_weight_decay = base_weight_decay or 0.0
    adamw = adamw_settings(base_lr, base_weight_decay, optimizer_cfg.get("adjust_lr", "original"),
                           *(optimizer_cfg.get(key) for key in ADAMW_KEYS))
    routes = routing.by_name()
    sided = []
    for group in groups:
        if routes[group["param_names"][0]].use_muon:
            sided.append(dict(group, use_muon=True))
        else:
            sided.append(adamw_group(group, base_lr, base_weight_decay, adamw))
    return sided


#: Optimizer settings that describe the AdamW side of the hybrid Muon (order: adamw_settings').
ADAMW_KEYS = ("adamw_lr", "adamw_betas", "adamw_eps", "adamw_weight_decay")
