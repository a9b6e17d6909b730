# torch's Adafactor (torch.optim.Adafactor, registered as TorchAdafactor): factored second
# moment with an explicit lr and a warm-up + cosine schedule.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='TorchAdafactor', lr=3e-2, beta2_decay=-0.8, weight_decay=0.0))
