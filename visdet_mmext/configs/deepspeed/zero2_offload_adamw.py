# ZeRO-2 with the optimizer offloaded to the CPU, written as a plain mmengine config.
#
# `type='AdamW'` trains as DeepSpeedCPUAdam(adamw_mode=True) with the same lr, betas, eps and
# weight decay (per param group); visdet_mmext's DeepSpeedStrategy does the mapping.
#   single process:  visdet-mmext train zero2_offload_adamw
#   two processes:   torchrun --nproc_per_node 2 -m visdet_mmext train zero2_offload_adamw \
#                        --launcher pytorch
_base_ = ['_base_/demo_convnet.py', '_base_/zero_offload.py']

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
