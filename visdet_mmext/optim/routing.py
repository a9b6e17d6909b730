"""Which parameters Muon updates, and why: a pure function of the model and the rules.

Muon orthogonalises the update of hidden weight matrices. Everything else (embeddings, the
layer that reads the input, output layers and final predictors, depthwise convs, and every
parameter with fewer than 2 dims) stays on AdamW. Output layers are found from the model's
structure (``output_layers``: the last layer of each branch of a head); a list of predictor
names is the fallback where structure cannot tell. Users move parameters with glob patterns
on full names or with ``custom_keys`` entries that carry ``use_muon``.

Precedence, highest first:
1. a parameter with fewer than 2 dims is always AdamW (user rules that select Muon apply to
   matrices only, so ``include=['neck.*']`` means the neck's matrices);
2. user rules: ``custom_keys`` ``use_muon`` flags, then ``include``/``exclude`` patterns;
   two user rules that disagree about one parameter raise;
3. the defaults, in the order of ``_default`` below.

Muon matrices that look like predictors (few rows inside a head, or an output no layer
reads) are reported in ``Routing.warnings`` with the ``exclude`` pattern that moves them.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
from dataclasses import dataclass, field

from torch import nn

from ..algorithms.muon.hybrid import adamw_group, adamw_settings
from ..errors import RoutingError
from .output_layers import HIDDEN, PREDICTOR, Structure

#: Local module names that mark a final predictor where structure cannot tell (outside heads,
#: or a predictor whose output width is also read inside its head). Generic names (``fc``,
#: ``head``, ``classifier``) are not here: they count only where structure says "output".
HEAD_NAMES = frozenset({
    "lm_head", "cls_score", "bbox_pred", "fc_cls", "fc_reg", "conv_cls", "conv_reg",
    "conv_centerness", "conv_obj", "retina_cls", "retina_reg", "rpn_cls", "rpn_reg",
    "conv_logits", "atss_cls", "atss_reg", "gfl_cls", "gfl_reg", "vfnet_cls", "vfnet_reg",
    "mask_pred", "multi_level_conv_cls", "multi_level_conv_reg", "multi_level_conv_obj",
})
#: Substrings of parameter names that mark embedding-like tables.
EMBEDDING_MARKS = ("embed", "pos_emb", "cls_token", "dist_token", "mask_token", "reg_token",
                   "absolute_pos", "relative_position")

MUON, ADAMW = True, False
#: A Muon matrix inside a head with at most this many rows is reported: it is likely a predictor.
FEW_ROWS = 16
#: Layers that can be the first to read the input (an embedding is AdamW anyway).
INPUT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class MuonRules:
    include: tuple[str, ...] = ()  # glob patterns on full parameter names -> Muon
    exclude: tuple[str, ...] = ()  # -> AdamW
    stem: str = "auto"  # "auto": first Conv/Linear/Embedding in module order; a glob; or "none"
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


def _default(name, param, path, module, stem, rules, structure) -> tuple[bool, str]:
    local = _local_name(path)
    if param.ndim < 2:
        return ADAMW, "fewer than 2 dims"
    flat = (param.shape[0], math.prod(param.shape[1:]))
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return ADAMW, "embedding"
    if any(mark in name.lower() for mark in EMBEDDING_MARKS):
        return ADAMW, "embedding-like name"
    if stem is not None and path == stem:
        return ADAMW, "first layer: reads the input"
    role, note = structure.role(path), ""
    if role.kind == PREDICTOR:
        return ADAMW, (f"output head / final predictor: last layer of its branch in "
                       f"{role.head_label} '{role.head}': {role.detail}")
    if role.kind == HIDDEN:
        if role.by_width and local in rules.heads:
            return ADAMW, (f"output head / final predictor: named {local!r} (by widths alone "
                           f"hidden in {role.head_label} '{role.head}': {role.detail})")
        note = f"; hidden in {role.head_label} '{role.head}': {role.detail}"
    elif structure.output_layer is not None and path == structure.output_layer.path:
        return ADAMW, ("output head / final predictor: the model's last layer, and no layer "
                       "reads its output")
    elif local in rules.heads:
        return ADAMW, f"output head / final predictor: named {local!r}"
    if _is_depthwise(module):
        return ADAMW, "depthwise conv"
    if min(flat) < 2:
        return ADAMW, f"degenerate matrix {flat[0]}x{flat[1]}"
    kind = "hidden conv kernel" if param.ndim > 2 else "hidden matrix"
    kind = kind if param.ndim == 2 else f"{kind}, flattened to {flat[0]}x{flat[1]}"
    return MUON, kind + note


def _patterns(names: list[str], all_names: list[str]) -> list[str]:
    """One glob for ``names`` (indices that differ become ``*``) if it matches nothing else,
    else the names themselves."""
    split = [name.split(".") for name in names]
    if len({len(parts) for parts in split}) == 1:
        glob = ".".join(parts[0] if len(set(parts)) == 1 else "*" for parts in zip(*split))
        if set(_matches_all(glob, all_names)) == set(names):
            return [glob]
    return names


def _matches_all(pattern: str, names: list[str]) -> list[str]:
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


def _predictor_warnings(routes: list[Route], defaulted: set[str], owners,
                        structure) -> list[str]:
    """Muon matrices routed by default that look like predictors, grouped by name with
    indices as ``*``."""
    groups: dict[tuple, list[Route]] = {}
    for route in routes:
        if not route.use_muon or route.name not in defaulted:
            continue
        layer = structure.by_path[owners[route.name][0]]
        head = structure.head_of[layer.path]
        why = []
        if head is not None and route.shape[0] <= FEW_ROWS:
            why.append(f"it has only {route.shape[0]} rows inside {structure.heads[head]} "
                       f"'{head}', so Muon gives it a full-rank orthogonal step whatever the "
                       "size of its gradient")
        if structure.feeds_nothing(layer):
            why.append(f"no layer of the model reads its output (width {layer.writes})")
        if why:
            key = (tuple("*" if part.isdigit() else part for part in route.name.split(".")),
                   route.shape, tuple(why))
            groups.setdefault(key, []).append(route)
    names = [route.name for route in routes]
    warnings = []
    for (_, shape, why), members in groups.items():
        patterns = _patterns([route.name for route in members], names)
        count = f"{len(members)} tensors " if len(members) > 1 else ""
        warnings.append(f"{', '.join(patterns)} ({count}{'x'.join(map(str, shape))}) is routed "
                        f"to Muon, but {'; and '.join(why)}. If it is an output or a predictor, "
                        f"add exclude={patterns!r}")
    return warnings


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
    structure = Structure(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    routes, conflicts, warnings, defaulted = [], [], [], set()
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
            side, why = _default(name, param, path, module, stem, rules, structure)
            defaulted.add(name)
            routes.append(Route(name, tuple(param.shape), side, why))
    if conflicts:
        raise RoutingError("contradictory Muon routing rules for:\n  " + "\n  ".join(conflicts))
    for kind, patterns in (("include", rules.include), ("exclude", rules.exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                warnings.append(_unused_pattern_warning(kind, pattern, names))
    warnings += _predictor_warnings(routes, defaulted, owners, structure)
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
