# 0/1 Adam: the variance is refreshed on a thinning schedule until `var_freeze_step`, the
# momentum travels 1-bit compressed, and after the freeze ranks take local steps between
# synchronisations (interval doubling every `local_step_scaler` iterations, at most
# `local_step_clipper`). Same lr as adam.py; the local-step schedule is scaled to this short
# run (DeepSpeed's BERT runs: 32678 for ~120k steps).
#   torchrun --nproc_per_node 4 tools/train.py configs/optimizers/zero_one_adam.py \
#       --launcher pytorch
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='ZeroOneAdam', lr=5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                   var_freeze_step=100, var_update_scaler=16, local_step_scaler=128,
                   local_step_clipper=16))
