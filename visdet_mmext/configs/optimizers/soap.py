# SOAP (pytorch-optimizer): Adam run in the eigenbasis of Shampoo's preconditioner, refreshed
# every precondition_frequency steps.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SOAP', lr=1e-2, betas=(0.95, 0.95), weight_decay=0.01,
                   precondition_frequency=10))
