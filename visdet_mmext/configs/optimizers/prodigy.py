# Prodigy (prodigyopt package): learning-rate-free Adam (lr=1.0 multiplies the estimated step
# size d). train/effective_lr logs d*lr*layer_scale.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Prodigy', lr=1.0, betas=(0.9, 0.999), weight_decay=0.05,
                   decouple=True))
