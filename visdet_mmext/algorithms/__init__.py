"""Optimizer algorithms in plain torch (no mmengine import)."""
