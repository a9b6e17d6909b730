"""The optimizers this package implements, in plain torch (no mmengine import).

``dispatch`` runs one per-tensor update along the single-tensor, foreach or compiled path;
``_adam`` holds Adam's moments (shared by LAMB and Muon's AdamW side).
"""
