# NAdam: Adam with Nesterov momentum (decoupled weight decay, as AdamW).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='NAdam', lr=5e-3, betas=(0.9, 0.999), weight_decay=0.05,
                   decoupled_weight_decay=True))
