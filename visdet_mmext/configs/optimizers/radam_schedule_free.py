# Schedule-free RAdam (schedulefree package): neither a decay nor a warm-up (the rectification
# is its warm-up; beta2 = 0.99 keeps it short, as in radam.py).
_base_ = ['../_base_/demo.py', '../_base_/schedules/constant.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='RAdamScheduleFree', lr=5e-3, betas=(0.9, 0.99), weight_decay=0.05))
