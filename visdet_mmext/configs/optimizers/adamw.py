# AdamW: Adam with decoupled weight decay; the usual default for vision and transformers.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-3, betas=(0.9, 0.999), weight_decay=0.05))
