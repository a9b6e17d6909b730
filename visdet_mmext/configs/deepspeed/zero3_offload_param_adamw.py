# ZeRO-3: parameters and optimizer state both offloaded to the CPU.
# (offload_param needs stage 3; the optimizer is DeepSpeedCPUAdam, mapped from AdamW.)
_base_ = ['_base_/demo_convnet.py']

strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(
        stage=3,
        offload_optimizer=dict(device='cpu'),
        offload_param=dict(device='cpu'),
    ),
)
optim_wrapper = dict(
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
)
