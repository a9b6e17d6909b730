"""OptimWrappers whose ``get_lr`` logs the step sizes the next step really applies.

mmengine's RuntimeInfoHook logs ``get_lr()[key][0]`` as ``train/<key>`` before each iteration;
the default reports the first param group's ``lr``, which misleads for two optimizers:

* hybrid Muon: the first group is usually an AdamW-side one (the stem), so ``lr`` showed the
  AdamW lr. Here ``lr`` is the Muon side's and ``adamw_lr`` the AdamW side's.
* Hugging Face Adafactor with ``lr=None`` (relative step): ``group['lr']`` is whatever a scheduler
  last wrote, while the step uses ``min(1e-2, 1/sqrt(t))`` (``1e-6 t`` under ``warmup_init``),
  times ``max(eps[1], RMS(param))`` with ``scale_parameter``. Here ``lr`` is that relative step
  and ``step_size`` the mean scaled step over a group's parameters (transformers'
  ``Adafactor._get_lr``, computed for the coming step).

The catalog rows pick these wrappers when the config asks for a plain ``OptimWrapper``.
"""
from __future__ import annotations

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class MuonOptimWrapper(OptimWrapper):

    def get_lr(self):
        lrs = super().get_lr()
        groups = self.optimizer.param_groups
        muon = [group["lr"] for group in groups if group.get("use_muon")]
        adamw = [group["lr"] for group in groups if not group.get("use_muon")]
        if muon:
            lrs["lr"] = muon
        if adamw:
            lrs["adamw_lr"] = adamw
        return lrs


@OPTIM_WRAPPERS.register_module()
class AdafactorOptimWrapper(OptimWrapper):

    def get_lr(self):
        lrs = super().get_lr()
        relative = [g for g in self.optimizer.param_groups if g.get("relative_step")]
        if not relative:
            return lrs
        lrs.pop("base_lr", None)  # the placeholder lr of a relative-step optimizer
        lrs["lr"] = [self._relative_step(group) if group.get("relative_step") else group["lr"]
                     for group in self.optimizer.param_groups]
        scaled = [self._scaled_step(group) for group in relative if group.get("scale_parameter")]
        if scaled:
            lrs["step_size"] = scaled
        return lrs

    def _relative_step(self, group) -> float:
        from ...algorithms.hf_adafactor import relative_step_size
        steps = [self.optimizer.state[p]["step"] for p in group["params"] if p in self.optimizer.state]
        return relative_step_size(max(steps, default=0) + 1, group["warmup_init"])

    @torch.no_grad()
    def _scaled_step(self, group) -> float:
        params = [p for p in group["params"] if p.numel()]
        if not params:
            return 0.0
        norms = torch._foreach_norm([p.float() for p in params])
        rms = torch.stack(norms).double() / torch.tensor([p.numel() ** 0.5 for p in params],
                                                         dtype=torch.float64)
        return float(rms.clamp(min=group["eps"][1]).mean()) * self._relative_step(group)
