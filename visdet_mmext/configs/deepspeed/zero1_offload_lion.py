# ZeRO-1 with CPU offload and Lion: visdet_mmext's Lion trains as DeepSpeedCPULion
# (lr, betas and weight decay per param group). Lion wants a 3-10x smaller lr and a
# 3-10x larger weight decay than AdamW.
_base_ = ['_base_/demo_convnet.py']

strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(stage=1, offload_optimizer=dict(device='cpu')),
)
optim_wrapper = dict(
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='Lion', lr=1e-4, betas=(0.9, 0.99), weight_decay=0.5),
)
