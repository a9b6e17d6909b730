"""The embedded demo: a shapes dataset drawn in code, two small models and an accuracy metric.

Importing this package registers ``DemoShapes`` (DATASETS), ``DemoConvNet`` and
``DemoTransformer`` (MODELS) and ``DemoAccuracy`` (METRICS) in mmengine's root registries,
so configs under any ``default_scope`` can name them.
"""
from .dataset import SHAPES, DemoShapes, draw_shapes
from .metrics import DemoAccuracy
from .models import DemoConvNet, DemoTransformer

__all__ = ["SHAPES", "DemoAccuracy", "DemoConvNet", "DemoShapes", "DemoTransformer", "draw_shapes"]
