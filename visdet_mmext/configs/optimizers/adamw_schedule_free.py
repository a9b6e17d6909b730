# Schedule-free AdamW (schedulefree package): no decay schedule, only a warm-up; lr 2x AdamW's
# (adamw.py), within the 1-10x its authors suggest.
# ScheduleFreeHook joins the Runner automatically: validation, testing and checkpoints use the
# averaged weights, with BatchNorm statistics recomputed for them.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamWScheduleFree', lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05))
