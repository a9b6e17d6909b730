"""FSDP2 for mmengine configs: ``FullyShardStrategy`` (FlexibleRunner).

Nothing here is imported by ``import visdet_mmext``: ``visdet_mmext.compat`` registers the
strategy once mmengine's strategy module is imported. User guide: ``docs/sharding.md``.
"""
