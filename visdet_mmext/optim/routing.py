"""Which parameters Muon updates, and why: a pure function of the model and the rules.

Muon orthogonalises the update of hidden weight matrices. Everything else (tables such as
embeddings, the layers that read the input, output layers and final predictors, depthwise
convs, and every parameter with fewer than 2 dims) stays on AdamW. This module decides from the
model's structure (``output_layers``), with predictor names as the fallback where structure
cannot tell; at the first backward ``retrace`` corrects that from the loss's graph
(``graph_reading``). Users move parameters with glob patterns on full names or with
``custom_keys`` entries that carry ``use_muon``.

Precedence, highest first:
1. a parameter with fewer than 2 dims is always AdamW (user rules that select Muon apply to
   matrices only, so ``include=['neck.*']`` means the neck's matrices);
2. user rules: ``custom_keys`` ``use_muon`` flags, then ``include``/``exclude`` patterns;
   two user rules that disagree about one parameter raise;
3. shape: depthwise convs and matrices with a dimension of 1 (AdamW);
4. the loss graph, once read (``retrace``);
5. the structure, in the order of ``_default`` below.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace

from torch import nn

from ..algorithms.muon.hybrid import adamw_group, adamw_settings
from ..errors import RoutingError
from ..suggest import closest_names
from . import graph_reading as graph
from .output_layers import PREDICTOR, TABLES, Structure, is_table

#: Local module names that mark a final predictor where structure cannot tell (outside heads,
#: or a predictor whose output width is also read inside its head). Generic names (``fc``,
#: ``head``, ``classifier``) are not here: they count only where structure says "output".
HEAD_NAMES = frozenset({
    "lm_head", "cls_score", "bbox_pred", "fc_cls", "fc_reg", "conv_cls", "conv_reg",
    "conv_centerness", "conv_obj", "retina_cls", "retina_reg", "rpn_cls", "rpn_reg",
    "conv_logits", "atss_cls", "atss_reg", "gfl_cls", "gfl_reg", "vfnet_cls", "vfnet_reg",
    "mask_pred", "multi_level_conv_cls", "multi_level_conv_reg", "multi_level_conv_obj",
})

MUON, ADAMW = True, False
#: Who decided a route: a user rule, the tensor's shape, the model's structure, the loss graph.
RULE, SHAPE, STRUCTURE, TRACE = "rule", "shape", "structure", "trace"
#: A Muon matrix inside a head with at most this many rows is reported: it is likely a predictor.
FEW_ROWS = 16


@dataclass(frozen=True)
class MuonRules:
    include: tuple[str, ...] = ()  # glob patterns on full parameter names -> Muon
    exclude: tuple[str, ...] = ()  # -> AdamW
    stem: str = "auto"  # "auto": the first layer and its parallel branches; a glob; or "none"
    heads: tuple[str, ...] = tuple(sorted(HEAD_NAMES))  # predictor names: the fallback rule

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
    by: str = STRUCTURE  # RULE, SHAPE, STRUCTURE or TRACE

    @property
    def side(self) -> str:
        return side_name(self.use_muon)


def side_name(use_muon: bool) -> str:
    return "Muon" if use_muon else "AdamW"


@dataclass
class Routing:
    routes: list[Route]
    warnings: list[str] = field(default_factory=list)  # the rules' problems (a pattern unused)
    doubts: list[str] = field(default_factory=list)  # where structure may be wrong (the loss
    # graph settles them; shown where no graph is read)

    def by_name(self) -> dict[str, Route]:
        return {route.name: route for route in self.routes}

    def summary(self) -> str:
        lines = []
        for use_muon in (MUON, ADAMW):
            chosen = [r for r in self.routes if r.use_muon == use_muon]
            numel = sum(math.prod(r.shape) for r in chosen)
            lines.append(f"{side_name(use_muon)}: {len(chosen)} tensors, {numel:,} parameters")
        return "; ".join(lines)

    def table(self) -> str:
        width = max((len(r.name) for r in self.routes), default=4)
        rows = [f"{'parameter':<{width}}  {'shape':<18}  side   reason"]
        rows += [f"{r.name:<{width}}  {str(tuple(r.shape)):<18}  {r.side:<5}  {r.reason}"
                 for r in self.routes]
        return "\n".join(rows)


def _matches(name: str, patterns) -> list[str]:
    return [p for p in patterns if fnmatch.fnmatchcase(name, p)]


def _owners(model: nn.Module) -> dict[str, tuple[str, str, nn.Module]]:
    """Parameter name -> (owning module path, local name, owning module)."""
    owners = {}
    for path, module in model.named_modules():
        for local, _ in module.named_parameters(recurse=False):
            owners[f"{path}.{local}" if path else local] = (path, local, module)
    return owners


def _is_depthwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1
            and module.in_channels == module.groups)


def _local_name(path: str) -> str:
    """Last component of a module path, skipping list indices (``cls_convs.0`` -> cls_convs)."""
    parts = [part for part in path.split(".") if not part.isdigit()]
    return parts[-1] if parts else ""


def _by_shape(param, module) -> tuple[bool, str] | None:
    if param.ndim < 2:
        return ADAMW, "fewer than 2 dims"
    if _is_depthwise(module):
        return ADAMW, "depthwise conv"
    flat = (param.shape[0], math.prod(param.shape[1:]))
    if min(flat) < 2:
        return ADAMW, f"degenerate matrix {flat[0]}x{flat[1]}"
    return None


def _default(param, path, local_param, module, rules, structure) -> tuple[bool, str]:
    if is_table(module, local_param):
        if isinstance(module, TABLES):
            return ADAMW, "embedding"
        return ADAMW, (f"table: a parameter {type(module).__name__} uses directly, not a "
                       "layer's weight")
    if path in structure.stems:
        return ADAMW, "first layer: reads the input"
    local, note = _local_name(path), ""
    role = structure.role(path)
    if role.kind == PREDICTOR:
        return ADAMW, (f"output head / final predictor: last layer of its branch in "
                       f"{role.head_label} '{role.head}': {role.detail}")
    if role.head is not None:
        if role.by_width and local in rules.heads:
            return ADAMW, (f"output head / final predictor: named {local!r} (by widths alone "
                           f"hidden in {role.head_label} '{role.head}': {role.detail})")
        note = f"; hidden in {role.head_label} '{role.head}': {role.detail}"
    elif role.output:
        return ADAMW, f"output of the model: {role.detail}"
    elif local in rules.heads:
        return ADAMW, f"output head / final predictor: named {local!r}"
    elif role.detail:
        note = f"; {role.detail}"
    flat = (param.shape[0], math.prod(param.shape[1:]))
    kind = "hidden conv kernel" if param.ndim > 2 else "hidden matrix"
    kind = kind if param.ndim == 2 else f"{kind}, flattened to {flat[0]}x{flat[1]}"
    return MUON, kind + note


def patterns_for(names: list[str], all_names: list[str]) -> list[str]:
    """One glob for ``names`` (indices that differ become ``*``) if it matches nothing else,
    else the names themselves."""
    split = [name.split(".") for name in names]
    if len({len(parts) for parts in split}) == 1:
        glob = ".".join(parts[0] if len(set(parts)) == 1 else "*" for parts in zip(*split))
        if {n for n in all_names if fnmatch.fnmatchcase(n, glob)} == set(names):
            return [glob]
    return names


def _few_rows_warnings(routes: list[Route], owners, structure) -> list[str]:
    """Muon matrices routed by structure inside an output head with few rows, grouped by name
    with indices as ``*``."""
    groups: dict[tuple, list[Route]] = {}
    for route in routes:
        if not route.use_muon or route.by != STRUCTURE:
            continue
        head = structure.head_of[owners[route.name][0]]
        if head is not None and route.shape[0] <= FEW_ROWS:
            key = (tuple("*" if part.isdigit() else part for part in route.name.split(".")),
                   route.shape, head)
            groups.setdefault(key, []).append(route)
    names = [route.name for route in routes]
    warnings = []
    for (_, shape, head), members in groups.items():
        patterns = patterns_for([route.name for route in members], names)
        count = f"{len(members)} tensors " if len(members) > 1 else ""
        warnings.append(f"{', '.join(patterns)} ({count}{'x'.join(map(str, shape))}) is routed "
                        f"to Muon, but it has only {shape[0]} rows inside "
                        f"{structure.heads[head]} '{head}', so Muon gives it a full-rank "
                        "orthogonal step whatever the size of its gradient. If it is an output "
                        f"or a predictor, add exclude={patterns!r}")
    return warnings


def _unused_pattern_warning(kind: str, pattern: str, names: list[str]) -> str:
    stripped = pattern.replace("*", "").replace("?", "")
    close = closest_names(stripped, names, n=3, cutoff=0.3)
    hint = f"; closest parameter names: {', '.join(close)}" if close else ""
    return f"muon {kind} pattern {pattern!r} matches no parameter{hint}"


def route_parameters(model: nn.Module, rules: MuonRules | None = None,
                     flags: dict[str, bool] | None = None) -> Routing:
    """Route every trainable parameter of ``model`` from its structure.

    ``flags`` holds explicit per-parameter choices from ``custom_keys`` (name -> use_muon).
    """
    rules = rules or MuonRules()
    flags = flags or {}
    owners = _owners(model)
    structure = Structure(model, rules.stem)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    routes, conflicts, warnings = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        path, local_param, module = owners[name]
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
        shape = tuple(param.shape)
        if claims:
            routes.append(Route(name, shape, claims[0][0], claims[0][1], RULE))
        elif (by_shape := _by_shape(param, module)) is not None:
            routes.append(Route(name, shape, *by_shape, SHAPE))
        else:
            routes.append(Route(name, shape, *_default(param, path, local_param, module, rules,
                                                       structure)))
    if conflicts:
        raise RoutingError("contradictory Muon routing rules for:\n  " + "\n  ".join(conflicts))
    for kind, patterns in (("include", rules.include), ("exclude", rules.exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                warnings.append(_unused_pattern_warning(kind, pattern, names))
    if not any(route.use_muon for route in routes):
        warnings.append("no parameter is routed to Muon: every parameter trains with AdamW")
    return Routing(routes, warnings, _few_rows_warnings(routes, owners, structure))


# -- the loss graph's correction ----------------------------------------------------------

def movable(route: Route) -> bool:
    """Whether the loss graph may move ``route``: structure decided it, and it is a matrix."""
    return route.by == STRUCTURE and len(route.shape) >= 2


def traced_route(route: Route, bits: int, stems_known: bool) -> Route:
    """``route`` as the loss graph's ``bits`` decide it (``graph_reading``); unchanged where the
    graph has no verdict."""
    kind = "matrix" if len(route.shape) == 2 else "conv kernel"
    if bits & graph.DEPTHWISE:
        return replace(route, use_muon=ADAMW, reason="depthwise conv (one input channel per "
                       "group in the loss graph)", by=TRACE)
    if bits & graph.TABLE:
        return replace(route, use_muon=ADAMW, reason="table: the loss graph reads it as data "
                       "(index, element-wise or a product's input), not as a layer's weight",
                       by=TRACE)
    if not bits & graph.LINEAR or bits & graph.OTHER:
        return route
    if bits & graph.FIRST:
        return replace(route, use_muon=ADAMW, reason="final predictor: read by the loss "
                       "directly (no matrix product between it and the loss)", by=TRACE)
    if bits & graph.STEM:
        return replace(route, use_muon=ADAMW, reason="stem: its product reads the network input",
                       by=TRACE)
    if not stems_known and route.reason.startswith("first layer"):
        return route
    return replace(route, use_muon=MUON, reason=f"hidden {kind}: a matrix product inside the "
                   "network (loss graph)", by=TRACE)


@dataclass(frozen=True)
class Retrace:
    """The routing after the loss graph, what moved, and what the graph did not reach."""
    routing: Routing
    moved: list[Route]  # the new routes of parameters that changed side
    unreached: list[str]  # matrices structure placed and the graph did not reach


def retrace(routing: Routing, bits: dict[str, int], stems_known: bool) -> Retrace:
    routes, moved, unreached = [], [], []
    for route in routing.routes:
        if not movable(route):
            routes.append(route)
            continue
        if not bits.get(route.name, 0) & graph.REACHED:
            unreached.append(route.name)
            routes.append(route)
            continue
        new = traced_route(route, bits[route.name], stems_known)
        routes.append(new)
        if new.use_muon != route.use_muon:
            moved.append(new)
    return Retrace(Routing(routes), moved, unreached)


def pin_lines(moved: list[Route], all_names: list[str]) -> list[str]:
    """The ``paramwise_cfg.muon`` settings that keep these routes without the loss graph."""
    lines = []
    for use_muon, key in ((ADAMW, "exclude"), (MUON, "include")):
        names = [route.name for route in moved if route.use_muon == use_muon]
        if names:
            lines.append(f"{key}={_globs(names, all_names)!r}")
    return lines


def _globs(names: list[str], all_names: list[str]) -> list[str]:
    """Few globs for ``names``: names differing only in indices share one when it matches
    nothing else."""
    groups: dict[tuple, list[str]] = {}
    for name in names:
        groups.setdefault(tuple("*" if p.isdigit() else p for p in name.split(".")), []).append(name)
    return [glob for members in groups.values() for glob in patterns_for(members, all_names)]


def assign_sides(groups: list[dict], routing: Routing, optimizer_cfg: dict, base_lr: float,
                 base_weight_decay: float | None) -> list[tuple[dict, dict | None]]:
    """Each one-parameter group on its side, and on the other side where the loss graph may
    move it (else None). AdamW-side groups get the AdamW settings, scaled by the same
    ``paramwise_cfg`` multipliers (``algorithms.muon.hybrid``)."""
    base_weight_decay = base_weight_decay or 0.0
    adamw = adamw_settings(base_lr, base_weight_decay, optimizer_cfg.get("adjust_lr", "original"),
                           *(optimizer_cfg.get(key) for key in ADAMW_KEYS))
    routes = routing.by_name()
    sided = []
    for group in groups:
        route = routes[group["param_names"][0]]
        sides = {MUON: dict(group, use_muon=True),
                 ADAMW: adamw_group(group, base_lr, base_weight_decay, adamw)}
        sided.append((sides[route.use_muon], sides[not route.use_muon] if movable(route) else None))
    return sided


#: Optimizer settings that describe the AdamW side of the hybrid Muon (order: adamw_settings').
ADAMW_KEYS = ("adamw_lr", "adamw_betas", "adamw_eps", "adamw_weight_decay")
