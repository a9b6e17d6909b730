# ADOPT: Adam normalised by the previous second moment, converges with any
# beta2; decoupled weight decay as AdamW.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='ADOPT', lr=5e-3, betas=(0.9, 0.9999), weight_decay=0.05,
                   decouple=True))
