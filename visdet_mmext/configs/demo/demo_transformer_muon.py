# The shapes demo with the small transformer (4x4 patches as tokens) and Muon: attention and
# MLP matrices -> Muon; patch embedding, cls token, positions, norms and head -> AdamW.
#   python tools/train.py configs/demo/demo_transformer_muon.py
_base_ = ['../optimizers/muon.py']

model = dict(_delete_=True, type='DemoTransformer', num_classes=4, embed_dim=64, depth=2,
             num_heads=4, mlp_ratio=2.0)
