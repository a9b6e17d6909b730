# D-Adaptation SGD: learning-rate-free SGD with momentum (lr=1.0).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='DAdaptSGD', lr=1.0, momentum=0.9, weight_decay=5e-4))
