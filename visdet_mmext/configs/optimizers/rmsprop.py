# RMSprop: step divided by a running RMS of the gradients (TF-style eps, with momentum).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='RMSprop', lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.9, weight_decay=0))
