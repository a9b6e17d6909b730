# Cosine decay from the first iteration, no warm-up (optimizers with their own warm-up, e.g. RAdam).
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=False, begin=0, end=600),
]
