"""Print how a config's optimizer sees the model, without training.

    visdet-mmext groups CONFIG [--cfg-options k=v ...]     (CONFIG: a file or a packaged name)

Builds the model and the optim wrapper exactly as training would, then prints the Muon
routing table (parameter, shape, side, reason) when the optimizer is Muon, and one line per
param group (lr, weight decay, side, size).
"""
from __future__ import annotations

import argparse

import visdet_mmext  # noqa: F401  (registers every optimizer and the constructors)
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, init_default_scope

from visdet_mmext.configs import find_config
from visdet_mmext.errors import OptimizerConfigError
from visdet_mmext.optim import check_optim_wrapper_cfg
from visdet_mmext.tools.cfg_options import CfgOptions
from visdet_mmext.tools.run_checks import check_types
from visdet_mmext.tools.train import load_config


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file, or a packaged config's name")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptions, default={})
    return parser.parse_args(argv)


def describe_groups(optimizer) -> list[str]:
    lines = []
    for index, group in enumerate(optimizer.param_groups):
        numel = sum(p.numel() for p in group["params"])
        side = {True: "Muon", False: "AdamW"}.get(group.get("use_muon"), "")
        names = group.get("param_names", [])
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        lines.append(f"group {index:>3}: {side:<5} lr={group['lr']:.3g} "
                     f"weight_decay={group.get('weight_decay', 0):.3g} tensors={len(group['params'])} "
                     f"params={numel:,} {shown}")
    return lines


def build(model, optim_cfg: dict):
    """What mmengine's build_optim_wrapper does, keeping the constructor to read its routing."""
    optim_cfg = dict(optim_cfg)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=optim_cfg.pop("constructor", "DefaultOptimWrapperConstructor"),
        optim_wrapper_cfg=optim_cfg, paramwise_cfg=optim_cfg.pop("paramwise_cfg", None)))
    return constructor, constructor(model)


def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    cfg = load_config(find_config(args.config))
    cfg.merge_from_dict(args.cfg_options)
    if cfg.get("optim_wrapper") is None:
        raise OptimizerConfigError(f"{args.config} has no optim_wrapper: nothing to group.")
    check_optim_wrapper_cfg(cfg.optim_wrapper, scope=cfg.get("default_scope"))
    check_types(cfg)
    init_default_scope(cfg.get("default_scope", "mmengine"))
    model = MODELS.build(cfg.model)
    constructor, wrapper = build(model, cfg.optim_wrapper.to_dict())
    total = sum(p.numel() for p in model.parameters())
    print(f"model {type(model).__name__}: {total:,} parameters; optimizer "
          f"{type(wrapper.optimizer).__name__}; wrapper {type(wrapper).__name__}; "
          f"constructor {type(constructor).__name__}")
    routing = getattr(constructor, "routing", None)
    if routing is not None:
        print(routing.table())
        print(routing.summary())
        for warning in routing.warnings:
            print(f"warning: {warning}")
    print("\n".join(describe_groups(wrapper.optimizer)))
    muon = sum(p.numel() for g in wrapper.optimizer.param_groups if g.get("use_muon")
               for p in g["params"])
    if muon:
        print(f"Muon updates {muon:,} of {total:,} parameters ({muon / total:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
