# 1-bit LAMB: LAMB for `freeze_step` iterations, then frozen variance and trust ratio (kept
# moving by a clipped factor) with 1-bit compressed momentum. Same lr, eps and decay as lamb.py.
#   torchrun --nproc_per_node 4 tools/train.py configs/optimizers/onebit_lamb.py --launcher pytorch
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='OnebitLamb', lr=2e-2, freeze_step=100, betas=(0.9, 0.999), eps=1e-6,
                   weight_decay=0.01, max_coeff=10.0, min_coeff=0.01))
