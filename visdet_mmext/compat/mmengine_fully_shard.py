"""mmengine's strategies, with one that shards by FSDP2 on CPU and GPU.

mmengine's ``FSDPStrategy`` wraps the model in FSDP1 (flat 1-D parameters: Muon, LAMB and every
per-parameter rule see no whole tensor) and calls CUDA. ``FullyShardStrategy``
(``visdet_mmext.fsdp.strategy``) is registered beside it.
"""
from __future__ import annotations

from . import patch


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine._strategy",
       fixes="""mmengine's FSDPStrategy shards with FSDP1, whose flat parameters no per-parameter
       optimizer (Muon, LAMB) can step, and needs CUDA: no FSDP2 strategy to train sharded on CPU""")
def mmengine_fully_shard_strategy(module) -> None:
    from mmengine.registry import STRATEGIES

    from ..fsdp.strategy import FullyShardStrategy
    STRATEGIES.register_module(name="FullyShardStrategy", module=FullyShardStrategy, force=True)
