# Adagrad: per-coordinate steps from summed squared gradients (no warm-up needed, but kept).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adagrad', lr=0.05, weight_decay=0))
