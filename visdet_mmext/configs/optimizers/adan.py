# Adan: Nesterov-style momentum of gradients and of their differences; decoupled (AdamW)
# weight decay instead of the default proximal one.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adan', lr=1.5e-2, betas=(0.98, 0.92, 0.99), weight_decay=0.02,
                   no_prox=True))
