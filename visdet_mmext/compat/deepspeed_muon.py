"""DeepSpeed's ZeRO Muon, with this package's routing and with conv kernels.

- ``deepspeed.set_optimizer_flags`` tags every parameter ``use_muon`` from ``ndim >= 2`` and the
  absence of "embed"/"lm_head" in its name, which sends stems, heads and depthwise convs to Muon.
  A parameter that carries ``ROUTED`` (set by ``visdet_mmext.deepspeed.strategy`` from this
  package's routing) keeps that side instead.
- ``muon_update`` flattens a 4-D gradient to out x (in*kh*kw) for Newton-Schulz, then returns
  ``torch.where(finite, update_2d, grad_4d)``, which cannot broadcast: every conv kernel routed to
  Muon crashes the first step (and the aspect-ratio scale comes from kh, kw). It now gets the
  gradient and momentum already viewed as the matrix, which fixes both.
"""
from __future__ import annotations

from . import patch, replace_attribute

#: Parameter attribute holding this package's routing decision (True: Muon).
ROUTED = "visdet_mmext_use_muon"


@patch(package="deepspeed", versions=">=0.19.8,<0.20", module="deepspeed",
       fixes="""DeepSpeed's ZeRO Muon routes by name and shape only: stems, heads and depthwise
       convs go to Muon whatever the package constructor decided""")
def deepspeed_muon_routing(module) -> None:
    def make(set_optimizer_flags):
        def set_flags_keeping_routing(config_class, model):
            set_optimizer_flags(config_class, model)
            for param in model.parameters():
                if hasattr(param, ROUTED):
                    param.use_muon = getattr(param, ROUTED)
        return set_flags_keeping_routing

    replace_attribute(module, "set_optimizer_flags", make)


@patch(package="deepspeed", versions=">=0.19.8,<0.20",
       module="deepspeed.runtime.zero.muon.original_muon",
       fixes="every conv kernel routed to DeepSpeed's ZeRO Muon crashes its first step")
def deepspeed_muon_conv_kernels(module) -> None:
    def make(muon_update):
        def muon_update_on_matrices(grad, momentum, *args, **kwargs):
            plain = not kwargs.get("is_expert_group") and kwargs.get("num_heads") is None
            if plain and grad.ndim > 2 and grad.is_contiguous() and momentum.is_contiguous():
                rows = grad.shape[0]
                update = muon_update(grad.view(rows, -1), momentum.view(rows, -1), *args, **kwargs)
                return update.reshape(grad.shape)
            return muon_update(grad, momentum, *args, **kwargs)
        return muon_update_on_matrices

    replace_attribute(module, "muon_update", make)
