# Linear warm-up over the first 50 iterations, then cosine decay to 1% of the lr at max_iters.
# `eta_min_ratio` (not an absolute eta_min) keeps per-group lr ratios (Muon/AdamW, lr_mult).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=False, begin=50, end=600),
]
