"""The two fixes applied to mmengine modules right after they execute (see ``hook.py``).

``mmengine._strategy.deepspeed``:
  * its ``register_deepspeed_optimizers`` imports ``deepspeed.runtime.fp16.onebit`` (removed
    in DeepSpeed 0.19.7, so no strategy can be built) and registers without ``force`` (a
    second strategy in one process raises ``KeyError``). It is replaced by an idempotent
    function that registers the catalog's DeepSpeed names;
  * ``DeepSpeedStrategy`` is re-registered as this package's subclass (``force=True``).

``mmengine.runner._flexible_runner``:
  * ``FlexibleRunner.from_cfg`` passes ``env_cfg=None`` when a config has none, and
    ``build_strategy`` then fails with ``TypeError: ... not NoneType``; ``None`` now means
    mmengine's own default (``dist_cfg=dict(backend='nccl')``; the DeepSpeed strategy uses
    gloo on CPU).
"""
from __future__ import annotations

import logging

from ..post_import import wrap_once

logger = logging.getLogger("visdet_mmext")

DEFAULT_ENV_CFG = {"dist_cfg": {"backend": "nccl"}}


def register_deepspeed_optimizers() -> list[str]:
    """Register the catalog's DeepSpeed optimizers; safe to call any number of times.

    Rows whose op exists on this accelerator get DeepSpeed's real class (DeepSpeed is
    imported by now, so that costs nothing and lets the checked constructor validate their
    arguments); the others keep the lazy builder, which fails with a "needs CUDA" message.
    """
    from mmengine.registry import OPTIMIZERS

    from ..optim.availability import AVAILABLE, NEEDS_CUDA
    from ..optim.catalog import rows_of
    from ..optim.loader import load_providers
    from ..optim.providers import deepspeed as provider

    report = load_providers()
    names = []
    for spec in rows_of("deepspeed"):
        info = report.availability(spec.name)
        if info is None or info.status not in (AVAILABLE, NEEDS_CUDA):
            continue
        registered = OPTIMIZERS.module_dict.get(spec.name)
        if info.usable:
            try:
                cls = provider.resolve(spec)
            except Exception:  # op missing on this accelerator: keep the clear lazy error
                cls = None
            if cls is not None and registered is not cls:
                OPTIMIZERS.register_module(name=spec.name, module=cls, force=True)
        elif registered is None:
            OPTIMIZERS.register_module(name=spec.name, module=provider.lazy_builder(spec), force=True)
        names.append(spec.name)
    return names


def fix_mmengine_deepspeed(module) -> None:
    """Patch ``mmengine._strategy.deepspeed`` once it has executed."""
    if getattr(module, "deepspeed", None) is None:
        return  # DeepSpeed not installed: mmengine's strategy already says so when built
    module.register_deepspeed_optimizers = register_deepspeed_optimizers
    from mmengine.registry import STRATEGIES

    from .strategy import DeepSpeedStrategy
    STRATEGIES.register_module(name="DeepSpeedStrategy", module=DeepSpeedStrategy, force=True)


def fix_flexible_runner(module) -> None:
    """``env_cfg=None`` (a config without ``env_cfg``) means mmengine's default."""
    def make_wrapper(build_strategy):
        def build_strategy_with_default_env(self, *args, **kwargs):
            if len(args) < 4 and kwargs.get("env_cfg", DEFAULT_ENV_CFG) is None:
                kwargs["env_cfg"] = {"dist_cfg": dict(DEFAULT_ENV_CFG["dist_cfg"])}
            return build_strategy(self, *args, **kwargs)
        return build_strategy_with_default_env

    wrap_once(module.FlexibleRunner, "build_strategy", make_wrapper)


def fix_deepspeed_muon_kernels() -> bool:
    """Let DeepSpeed's ZeRO Muon update conv kernels (and any >2-D weight) as matrices.

    DeepSpeed 0.19.8's ``muon_update`` flattens a 4-D gradient to out x (in*kh*kw) for
    Newton-Schulz, then returns ``torch.where(finite, update_2d, grad_4d)``, which cannot
    broadcast: every conv kernel routed to Muon crashes the first step. It also takes the
    aspect-ratio scale from the last two dims (kh, kw) instead of the matrix. Handing it the
    gradient and momentum already viewed as the matrix fixes both (the scale then matches
    this package's Muon). Applied once, and only where DeepSpeed's Muon will run.
    """
    from deepspeed.runtime.zero.muon import muon_optimizer, original_muon

    def make_wrapper(muon_update):
        def muon_update_on_matrices(grad, momentum, *args, **kwargs):
            plain = not kwargs.get("is_expert_group") and kwargs.get("num_heads") is None
            if plain and grad.ndim > 2 and grad.is_contiguous() and momentum.is_contiguous():
                rows = grad.shape[0]
                update = muon_update(grad.view(rows, -1), momentum.view(rows, -1), *args, **kwargs)
                return update.reshape(grad.shape)
            return muon_update(grad, momentum, *args, **kwargs)
        return muon_update_on_matrices

    original = wrap_once(original_muon, "muon_update", make_wrapper)
    if original is None:
        return False
    if getattr(muon_optimizer, "muon_update", None) is original:  # imported by name there
        muon_optimizer.muon_update = original_muon.muon_update
    return True
