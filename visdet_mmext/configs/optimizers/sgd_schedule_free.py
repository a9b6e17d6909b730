# Schedule-free SGD (schedulefree package): lr 10-50x plain SGD's, no decay, only a warm-up.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGDScheduleFree', lr=1.0, momentum=0.9, weight_decay=5e-4))
