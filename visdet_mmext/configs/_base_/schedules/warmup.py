# Linear warm-up over the first 50 iterations, then a constant lr: the schedule for
# schedule-free optimizers, whose average of the iterates takes the place of a decay.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
]
