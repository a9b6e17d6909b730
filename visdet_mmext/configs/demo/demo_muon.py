# `make demo`: the embedded shapes demo (drawn in code, no download) trained on the CPU with
# Muon, routed per layer by VisdetOptimWrapperConstructor (hidden convs -> Muon; stem,
# depthwise convs, head, norms, biases -> AdamW). About a minute on two CPU cores.
#   python tools/train.py configs/demo/demo_muon.py
_base_ = ['../optimizers/muon.py']
