"""Faithful module trees of real vision models (see ``registry.ZooModel``), for Muon routing.

Each family file reproduces the upstream classes it names: same parameter names, shapes,
``requires_grad``, class names along every parameter's path, and registration order, checked
against a fingerprint recorded from the real package (timm, mmdet and mmpretrain do not
import beside this torch build, so the trees are reproduced rather than imported).
"""
from . import detr_family, mmpretrain_models, one_stage, timm_models, two_stage

ZOO = {entry.name: entry
       for family in (detr_family, two_stage, one_stage, timm_models, mmpretrain_models)
       for entry in family.MODELS}
