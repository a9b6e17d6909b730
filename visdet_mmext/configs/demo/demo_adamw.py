# The embedded shapes demo with AdamW, the usual baseline.
#   python tools/train.py configs/demo/demo_adamw.py
_base_ = ['../optimizers/adamw.py']
