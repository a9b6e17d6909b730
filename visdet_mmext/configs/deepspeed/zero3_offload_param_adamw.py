# ZeRO-3: parameters and optimizer state both offloaded to the CPU.
# (offload_param needs stage 3; the optimizer is DeepSpeedCPUAdam, mapped from AdamW.)
_base_ = ['_base_/demo_convnet.py', '_base_/zero_offload.py']

strategy = dict(zero_optimization=dict(stage=3, offload_param=dict(device='cpu')))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
