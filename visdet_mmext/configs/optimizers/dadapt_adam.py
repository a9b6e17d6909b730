# D-Adaptation Adam: learning-rate-free (lr=1.0 multiplies the adapted step d).
# The schedule still shapes the step; train/effective_lr logs d*lr.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='DAdaptAdam', lr=1.0, betas=(0.9, 0.999), weight_decay=0.05,
                   decouple=True))
