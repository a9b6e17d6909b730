# Adadelta: unit-free steps from running averages of gradients and updates (lr=1.0 is standard).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adadelta', lr=1.0, rho=0.9, eps=1e-6, weight_decay=0))
