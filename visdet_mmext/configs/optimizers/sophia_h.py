# SophiaH (pytorch-optimizer): momentum divided by a Hutchinson Hessian estimate, each coordinate
# clipped to lr * p. SophiaOptimWrapper makes every update_period-th backward keep its graph.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SophiaH', lr=0.2, betas=(0.96, 0.99), p=0.01, weight_decay=0.005,
                   update_period=10))
