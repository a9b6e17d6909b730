# DeepSpeed's vectorised CPU Adam (AdamW mode), used here as a plain optimizer through the
# ordinary Runner (no DeepSpeed engine). The first build JIT-compiles DeepSpeed's cpu_adam op
# (1-3 min, cached in TORCH_EXTENSIONS_DIR). ZeRO / ZeRO-Offload configs: configs/deepspeed/.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='DeepSpeedCPUAdam', lr=5e-3, betas=(0.9, 0.999), weight_decay=0.05,
                   adamw_mode=True))
