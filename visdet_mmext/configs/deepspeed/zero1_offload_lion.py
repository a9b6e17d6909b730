# ZeRO-1 with CPU offload and Lion: visdet_mmext's Lion trains as DeepSpeedCPULion
# (lr, betas and weight decay per param group). Lion wants a 3-10x smaller lr and a
# 3-10x larger weight decay than AdamW.
_base_ = ['_base_/demo_convnet.py', '_base_/zero_offload.py']

strategy = dict(zero_optimization=dict(stage=1))
optim_wrapper = dict(optimizer=dict(type='Lion', lr=1e-4, betas=(0.9, 0.99), weight_decay=0.5))
