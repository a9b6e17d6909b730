# SophiaG (this package): momentum divided by a Gauss-Newton-Bartlett Hessian estimate, clipped
# per coordinate to lr. SophiaOptimWrapper refreshes the estimate every update_period steps from
# the model's logits (DemoConvNet names its head as logits_module).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SophiaG', lr=2e-3, betas=(0.965, 0.99), rho=0.04, weight_decay=0.1,
                   update_period=10))
