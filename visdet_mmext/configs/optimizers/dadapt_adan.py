# D-Adaptation Adan: learning-rate-free Adan (lr=1.0); d0=1e-4 (default 1e-6) shortens the
# growth of the step-size estimate in a short run.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='DAdaptAdan', lr=1.0, weight_decay=0.02, d0=1e-4))
