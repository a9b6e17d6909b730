# RAdam: variance rectification replaces the warm-up, so the schedule is cosine only.
# The rectification acts like a warm-up of about 2 / (1 - beta2) steps: beta2 = 0.99 (~200
# steps) suits this 600-iteration run; keep 0.999 for long trainings.
_base_ = ['../_base_/demo.py', '../_base_/schedules/cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='RAdam', lr=5e-3, betas=(0.9, 0.99), weight_decay=0.05,
                   decoupled_weight_decay=True))
