# The embedded demo: 32x32 shape images drawn in code (no download) and a small conv net.
# Trains on a laptop CPU in about a minute. Optimizer configs add `optim_wrapper` and a
# schedule from `schedules/`. No imports in this file (Python 3.11 + mmengine 0.10.7).

# `tools/train.py` loads the plugin itself; this line makes `Runner.from_cfg(Config.fromfile(...))`
# work too, and registers the demo dataset, models and metric.
custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo'], allow_failed_imports=False)
default_scope = 'mmengine'

classes = ('circle', 'square', 'triangle', 'cross')
max_iters = 600

model = dict(type='DemoConvNet', num_classes=len(classes), widths=(32, 64, 128))

dataset = dict(type='DemoShapes', classes=classes, num_train=20000, num_val=1000, seed=0)
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),  # iteration-based: no epoch restarts
    collate_fn=dict(type='default_collate'),
    dataset=dict(dataset, split='train'))
val_dataloader = dict(
    batch_size=250,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(dataset, split='val'))
val_evaluator = dict(type='DemoAccuracy')

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=200)
val_cfg = dict(type='ValLoop')

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),  # the first line about a second into training
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'))
log_processor = dict(by_epoch=False, window_size=20)
# torch threads = the cores other processes leave free (with one of 2 cores taken this small model
# trained 6x slower with 2 threads than with 1); OMP_NUM_THREADS=N overrides it.
custom_hooks = [dict(type='CpuThreadsHook', threads='auto')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))  # tools/train.py switches to gloo on a CPU-only torch
randomness = dict(seed=0)
# `--auto-scale-lr` scales every lr by (processes x batch size) / 64, the batch the lrs were set for
auto_scale_lr = dict(enable=False, base_batch_size=64)
log_level = 'INFO'
load_from = None
resume = False
