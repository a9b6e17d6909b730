# 1-bit Adam: Adam for `freeze_step` iterations, then frozen variance and 1-bit compressed
# momentum (the DDP gradient all-reduce stops: ~1/32 of its bytes per step). Same lr as adam.py.
#   torchrun --nproc_per_node 4 tools/train.py configs/optimizers/onebit_adam.py --launcher pytorch
# freeze_step: ~15-25% of training and past the lr warm-up (DeepSpeed's BERT: 23000 of 118000).
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='OnebitAdam', lr=5e-3, freeze_step=100, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0))
