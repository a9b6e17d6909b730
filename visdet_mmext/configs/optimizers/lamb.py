# LAMB (native): Adam update scaled per parameter by the trust ratio ||w|| / ||update||.
# Built for large batches; a larger lr than AdamW is usual.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='LAMB', lr=2e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01))
