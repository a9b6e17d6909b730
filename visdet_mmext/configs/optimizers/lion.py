# Lion (this package's native implementation): sign of interpolated momentum.
# Recommended: lr 3-10x smaller and weight decay 3-10x larger than AdamW
# (adamw.py: lr 5e-3, wd 0.05 -> Lion lr 1.5e-3, wd 0.25), betas (0.9, 0.99).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lion', lr=1.5e-3, betas=(0.9, 0.99), weight_decay=0.25))
