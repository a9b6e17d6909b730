# bitsandbytes AdamW8bit: AdamW with 8-bit block-wise optimizer state (runs on CPU with
# bitsandbytes >= 0.50). Tensors under min_8bit_size elements keep 32-bit state.
_base_ = ['../_base_/demo.py', '../_base_/schedules/warmup_cosine.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW8bit', lr=5e-3, betas=(0.9, 0.999), weight_decay=0.05,
                   min_8bit_size=4096))
