# The embedded demo (shapes drawn in code, a small residual conv net) under mmengine's
# FlexibleRunner. The DeepSpeed configs next to this folder and configs/fsdp add `strategy` and
# `optim_wrapper`.
custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo'], allow_failed_imports=False)

runner_type = 'FlexibleRunner'
model = dict(type='DemoConvNet', num_classes=4, widths=(32, 64, 128))

_dataset = dict(type='DemoShapes', num_train=2000, num_val=400, size=32, seed=0)
_loader = dict(num_workers=0, collate_fn=dict(type='default_collate'))
train_dataloader = dict(_loader, batch_size=32, dataset=dict(_dataset, split='train'),
                        sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(_loader, batch_size=64, dataset=dict(_dataset, split='val'),
                      sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='DemoAccuracy')

train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=2)
val_cfg = dict()
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=4, T_max=4, eta_min_ratio=0.05),
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    logger=dict(type='LoggerHook', interval=20))
randomness = dict(seed=0)
