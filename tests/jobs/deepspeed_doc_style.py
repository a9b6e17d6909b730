# The DeepSpeed strategy exactly as mmengine's "Training Big Models" guide writes it (ZeRO-3
# with the legacy `cpu_offload` key), minus fp16, which DeepSpeed's CPU backend lacks. Here
# cpu_offload=True: visdet_mmext's strategy reads it as offload_optimizer=dict(device='cpu').
_base_ = ['../../visdet_mmext/configs/deepspeed/_base_/demo_convnet.py']

strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(
        stage=3,
        allgather_partitions=True,
        reduce_scatter=True,
        allgather_bucket_size=50000000,
        reduce_bucket_size=50000000,
        overlap_comm=True,
        contiguous_gradients=True,
        cpu_offload=True),
)
optim_wrapper = dict(type='DeepSpeedOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
