# Adam (L2 weight decay folded into the gradient; prefer AdamW when you want decay).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=5e-3, betas=(0.9, 0.999), weight_decay=0))
