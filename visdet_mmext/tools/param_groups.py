"""Print how a config's optimizer sees the model, without training.

    visdet-mmext groups CONFIG [--trace [--device cpu]] [--cfg-options k=v ...]

Builds the model and the optim wrapper exactly as training would, then prints the Muon
routing table (parameter, shape, side, reason) when the optimizer is Muon, and one line per
param group (lr, weight decay, side, size). ``--trace`` also runs one real batch of
``train_dataloader`` through the model's loss (no optimizer step) and prints the routing the
loss graph gives beside the structural one, every difference with its reason, and the
``paramwise_cfg.muon`` settings that pin it.
"""
from __future__ import annotations

import argparse
import time

import visdet_mmext  # noqa: F401  (registers every optimizer and the constructors)
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, init_default_scope

from visdet_mmext.configs import find_config
from visdet_mmext.errors import CommandLineError, OptimizerConfigError, RunnerConfigError
from visdet_mmext.optim import check_optim_wrapper_cfg
from visdet_mmext.optim.graph_reading import REACHED, read_graph
from visdet_mmext.optim.routing import pin_lines, retrace
from visdet_mmext.optim.traced_routing import tensors_in
from visdet_mmext.runtime.train_data import no_batch_reason
from visdet_mmext.tools.cfg_options import CfgOptions
from visdet_mmext.tools.run_checks import check_types
from visdet_mmext.tools.train import load_config


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config file, or a packaged config's name")
    parser.add_argument("--trace", action="store_true",
                        help="run one batch through the model's loss (no step) and show the "
                             "routing its graph gives")
    parser.add_argument("--device", default="cpu", help="device for --trace (default: cpu)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptions, default={})
    return parser.parse_args(argv)


def describe_groups(optimizer) -> list[str]:
    lines = []
    for index, group in enumerate(optimizer.param_groups):
        numel = sum(p.numel() for p in group["params"])
        side = {True: "Muon", False: "AdamW"}.get(group.get("use_muon"), "")
        names = group.get("param_names", [])
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        if not names and side:
            shown = "(kept for parameters the loss graph moves)"
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


def one_batch(cfg):
    """The first batch of the config's train_dataloader, or an error naming the fix."""
    from mmengine.runner import Runner
    loader_cfg = cfg.get("train_dataloader")
    if loader_cfg is None:
        raise CommandLineError("--trace runs one batch of train_dataloader through the model's "
                               "loss, and this config has no train_dataloader: add one, or drop "
                               "--trace for the structural routing.")
    # one batch: worker processes would cost more than they save
    loader_cfg = dict(loader_cfg, num_workers=0, persistent_workers=False)
    try:
        loader = Runner.build_dataloader(loader_cfg, seed=0)
        reason = no_batch_reason(loader)
        if reason:  # an infinite sampler would wait for a sample forever
            raise RunnerConfigError(f"--trace: train_dataloader yields no batch: {reason}.")
        return next(iter(loader))
    except StopIteration:
        raise RunnerConfigError("--trace: train_dataloader yields no batch.") from None
    except RunnerConfigError:
        raise
    except Exception as error:  # the dataset's own failure, shown with what to fix
        raise RunnerConfigError(f"--trace could not produce a batch from train_dataloader: "
                                f"{type(error).__name__}: {error}. Fix the dataset settings (paths, "
                                "pipeline), or drop --trace for the structural routing.") from error


def loss_of(model, batch, device: str):
    """The loss of one batch as the Runner's train step computes it (no backward, no step)."""
    if not all(hasattr(model, name) for name in ("data_preprocessor", "parse_losses")):
        raise CommandLineError(f"--trace runs the loss as mmengine's train step does, and "
                               f"{type(model).__name__} is no mmengine BaseModel.")
    model.to(device).train()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode="loss") if isinstance(data, dict) else model(*data, mode="loss")
    loss, _ = model.parse_losses(losses)
    return loss, tensors_in(data)


def print_trace(model, routing, loss, inputs) -> int:
    params = {id(p): p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    names = {id(p): n for n, p in model.named_parameters()}
    if loss.grad_fn is None:
        print("the loss has no autograd graph (computed under no_grad?): the structural routing "
              "is what training uses")
        return 0
    start = time.perf_counter()
    reading = read_graph([loss], params, names, inputs)
    seconds = time.perf_counter() - start
    traced = retrace(routing, reading.bits, reading.stems_known)
    after = traced.routing.by_name()
    width = max((len(r.name) for r in routing.routes), default=9)
    print(f"\ntraced routing (one batch through the loss, no step; the graph read in "
          f"{seconds * 1000:.0f} ms):")
    print(f"{'parameter':<{width}}  {'shape':<18}  structure  traced  reason")
    for route in routing.routes:
        now = after[route.name]
        mark = "*" if now.use_muon != route.use_muon else " "
        print(f"{route.name:<{width}}  {str(route.shape):<18}  {route.side:<9}  {now.side:<5} "
              f"{mark} {now.reason}")
    print(f"\n{len(traced.moved) or 'no'} tensor(s) differ from the structural routing"
          f"{':' if traced.moved else ''}")
    for route in traced.moved:
        print(f"  {route.name}: {route.side} ({route.reason})")
    if traced.unreached:
        print(f"not reached by the loss, so decided by structure: {', '.join(traced.unreached)}")
    reached = sum(1 for name in reading.bits if reading.bits[name] & REACHED)
    print(f"the loss reaches {reached} of {len(params)} trainable matrices; {traced.routing.summary()}")
    if traced.moved:
        pins = pin_lines(traced.moved, [route.name for route in routing.routes])
        print("to train with this routing without the loss graph (e.g. under DeepSpeed ZeRO), "
              f"add to the config:\n  paramwise_cfg=dict(muon=dict({', '.join(pins)}))")
    return 0


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
        for warning in routing.warnings + ([] if args.trace else routing.doubts):
            print(f"warning: {warning}")
    print("\n".join(describe_groups(wrapper.optimizer)))
    muon = sum(p.numel() for g in wrapper.optimizer.param_groups if g.get("use_muon")
               for p in g["params"])
    if muon:
        print(f"Muon updates {muon:,} of {total:,} parameters ({muon / total:.0%})")
    if args.trace:
        if routing is None:
            raise CommandLineError(f"--trace shows Muon routing, and {args.config}'s optimizer "
                                   "does not route (use type='Muon' with "
                                   "constructor='VisdetOptimWrapperConstructor').")
        print(f"\nreading one batch of train_dataloader on {args.device} ...", flush=True)
        loss, inputs = loss_of(model, one_batch(cfg), args.device)
        return print_trace(model, routing, loss, inputs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
