# ZeRO-2 with the optimizer offloaded to the CPU, written as a plain mmengine config.
#
# `type='AdamW'` trains as DeepSpeedCPUAdam(adamw_mode=True) with the same lr, betas, eps and
# weight decay (per param group); visdet_mmext's DeepSpeedStrategy does the mapping.
#   single process:  python tools/train.py configs/deepspeed/zero2_offload_adamw.py
#   two processes:   torchrun --nproc_per_node 2 tools/train.py \
#                        configs/deepspeed/zero2_offload_adamw.py --launcher pytorch
_base_ = ['_base_/demo_convnet.py']

strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(stage=2, offload_optimizer=dict(device='cpu')),
)
optim_wrapper = dict(
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
