# FSDP2 (torch's fully_shard) with this package's hybrid Muon, routed per layer, on CPU or GPU.
#
# Every parameter is a DTensor holding this rank's slice. Muon gathers each matrix to one rank
# (FLOP-balanced), orthogonalises it there and sends the update's slices back; AdamW's side
# steps the slices. Checkpoints hold whole tensors (they resume with or without sharding).
#   visdet-mmext train fsdp_muon                                    (one process)
#   torchrun --nproc_per_node 2 tools/train.py fsdp_muon --launcher pytorch
_base_ = ['../deepspeed/_base_/demo_convnet.py']

strategy = dict(type='FullyShardStrategy')
optim_wrapper = dict(
    optimizer=dict(type='Muon', lr=0.02, momentum=0.95, weight_decay=0.01,
                   adamw_lr=1e-3, adamw_betas=(0.9, 0.95), adamw_weight_decay=0.05),
    constructor='VisdetOptimWrapperConstructor',
)
