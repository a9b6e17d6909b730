# DeepSpeed ZeRO with the optimizer offloaded to the CPU; the configs next to `_base_/` set the
# stage and the optimizer.
strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(stage=2, offload_optimizer=dict(device='cpu')),
)
optim_wrapper = dict(type='DeepSpeedOptimWrapper')
