# bitsandbytes Lion8bit: Lion with 8-bit block-wise momentum (lr/wd as for Lion).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lion8bit', lr=1.5e-3, betas=(0.9, 0.99), weight_decay=0.25,
                   min_8bit_size=4096))
