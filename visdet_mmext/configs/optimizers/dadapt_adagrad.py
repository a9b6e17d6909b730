# D-Adaptation AdaGrad: learning-rate-free AdaGrad (lr=1.0). Its distance estimate d grows
# slowly from the default d0=1e-6 (a 600-iteration run stays at chance): start at d0=1e-2.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='DAdaptAdaGrad', lr=1.0, momentum=0.9, d0=1e-2, weight_decay=0))
