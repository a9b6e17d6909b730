"""Re-implementations of the layer-wise lr decay constructors that mmpretrain and mmdet ship,
and small models shaped like the ones they are written for.

Why not the real ones: neither package imports on the pinned stack (checked with mmpretrain
1.2.0, mmdet 3.3.0, mmcv-lite 2.1.0): ``import mmpretrain`` pulls in torchvision, whose PyPI
build does not load beside torch 2.13's CPU build ("operator torchvision::nms does not exist"),
and ``mmdet.engine`` needs mmcv's compiled ops (``mmcv._ext``). So the grouping rules are written
here from the upstream files, keeping every rule that decides a parameter's lr and weight decay:

* ``PretrainLayerDecay``: mmpretrain/engine/optimizers/layer_decay_optim_wrapper_constructor.py
  (``LearningRateDecayOptimWrapperConstructor``): one group per parameter; weight decay from the
  longest matching ``custom_keys`` entry's ``decay_mult``, else ``norm_decay_mult`` (norm
  layers), ``bias_decay_mult`` (``bias``), ``flat_decay_mult`` (1-D); lr = base lr x
  ``layer_decay_rate ** (max_id - layer_id - 1)`` from the model's ``get_layer_depth(name)``;
  extra keys ``lr_scale``, ``layer_id``, ``param_name``.
* ``DetectionLayerDecay``: mmdet/engine/optimizers/layer_decay_optimizer_constructor.py
  (``LearningRateDecayOptimizerConstructor``, ``decay_type='layer_wise'``, ConvNeXt backbones):
  one group per (layer id, decay or not); no weight decay for 1-D parameters, ``*.bias``,
  ``pos_embed`` and ``cls_token``; layer ids from ConvNeXt's stage and block numbers; lr =
  base lr x ``decay_rate ** (num_layers + 2 - layer_id - 1)``; extra keys ``lr_scale``,
  ``group_name``, ``param_names``.
"""
from __future__ import annotations

import torch
from mmengine.model import BaseModel
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
         nn.LayerNorm)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
class PretrainLayerDecay(DefaultOptimWrapperConstructor):

    def add_params(self, params, module, prefix="", get_layer_depth=None, **kwargs):
        get_layer_depth = get_layer_depth or module.get_layer_depth
        cfg = self.paramwise_cfg
        custom_keys = cfg.get("custom_keys", {})
        by_length = sorted(sorted(custom_keys), key=len, reverse=True)
        is_norm = isinstance(module, NORMS)
        for local, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            name = prefix + local
            group = {"params": [param]}
            if self.base_wd is not None:
                key = next((k for k in by_length if k in name), None)
                if key is not None:
                    entry = dict(custom_keys[key])
                    group["weight_decay"] = self.base_wd * entry.pop("decay_mult", 1.0)
                    group.update(entry)
                elif is_norm and cfg.get("norm_decay_mult") is not None:
                    group["weight_decay"] = self.base_wd * cfg["norm_decay_mult"]
                elif local == "bias" and cfg.get("bias_decay_mult") is not None:
                    group["weight_decay"] = self.base_wd * cfg["bias_decay_mult"]
                elif param.ndim == 1 and cfg.get("flat_decay_mult") is not None:
                    group["weight_decay"] = self.base_wd * cfg["flat_decay_mult"]
                else:
                    group["weight_decay"] = self.base_wd
            layer_id, max_id = get_layer_depth(name)
            scale = cfg.get("layer_decay_rate", 1.0) ** (max_id - layer_id - 1)
            group.update(lr=self.base_lr * scale, lr_scale=scale, layer_id=layer_id,
                         param_name=name)
            params.append(group)
        for child_name, child in module.named_children():
            self.add_params(params, child, prefix=f"{prefix}{child_name}.",
                            get_layer_depth=get_layer_depth)


def convnext_layer_id(name: str, max_layer_id: int) -> int:
    if name in ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed"):
        return 0
    if name.startswith("backbone.downsample_layers"):
        return {0: 0, 1: 2, 2: 3, 3: max_layer_id}[int(name.split(".")[2])]
    if name.startswith("backbone.stages"):
        stage, block = int(name.split(".")[2]), int(name.split(".")[3])
        return {0: 1, 1: 2, 2: 3 + block // 3, 3: max_layer_id}[stage]
    return max_layer_id + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
class DetectionLayerDecay(DefaultOptimWrapperConstructor):

    def add_params(self, params, module, **kwargs):
        if "ConvNeXt" not in type(module.backbone).__name__:
            raise NotImplementedError("layer_wise decay is written for ConvNeXt backbones")
        num_layers = self.paramwise_cfg["num_layers"] + 2
        rate = self.paramwise_cfg["decay_rate"]
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = param.ndim == 1 or name.endswith(".bias") or name in ("pos_embed",
                                                                               "cls_token")
            layer_id = convnext_layer_id(name, self.paramwise_cfg["num_layers"])
            key = f"layer_{layer_id}_{'no_decay' if no_decay else 'decay'}"
            if key not in groups:
                scale = rate ** (num_layers - layer_id - 1)
                groups[key] = dict(weight_decay=0.0 if no_decay else self.base_wd, params=[],
                                   param_names=[], lr_scale=scale, group_name=key,
                                   lr=scale * self.base_lr)
            groups[key]["params"].append(param)
            groups[key]["param_names"].append(name)
        params.extend(groups.values())


class _Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
        x = x + self.proj(attention @ v)
        return x + self.fc(torch.relu(x))


class TinyViT(BaseModel):
    """4x4 patches of 3x8x8 images; ``get_layer_depth`` as mmpretrain's VisionTransformer."""

    def __init__(self, dim: int = 16, depth: int = 2, classes: int = 4):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.layers = nn.ModuleList(_Block(dim) for _ in range(depth))
        self.ln1 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def get_layer_depth(self, name: str, prefix: str = ""):
        num_layers = len(self.layers) + 2
        name = name[len(prefix):]
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0, num_layers
        if name.startswith("layers"):
            return int(name.split(".")[1]) + 1, num_layers
        return num_layers - 1, num_layers

    def forward(self, inputs, targets=None, mode="tensor"):
        tokens = self.patch_embed(inputs).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], 1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        logits = self.head(self.ln1(x[:, 0]))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, targets))
        return logits


class TinyConvNeXt(nn.Module):
    """ConvNeXt's layout: ``downsample_layers.S`` and ``stages.S.B`` (dwconv, norm, two MLPs)."""

    def __init__(self, dims=(8, 8, 16, 16), depths=(1, 1, 3, 1)):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            nn.Conv2d(3 if s == 0 else dims[s - 1], dims[s], 2 if s else 1, stride=2 if s else 1)
            for s in range(4))
        self.stages = nn.ModuleList(
            nn.Sequential(*(_ConvNeXtBlock(dims[s]) for _ in range(depths[s]))) for s in range(4))

    def forward(self, x):
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return x


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Linear(dim, 2 * dim)
        self.pointwise_conv2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        y = self.norm(self.depthwise_conv(x).permute(0, 2, 3, 1))
        return x + self.pointwise_conv2(torch.relu(self.pointwise_conv1(y))).permute(0, 3, 1, 2)


class ConvNeXtClassifier(BaseModel):
    """``backbone`` (the class name mmdet's constructor checks) and a ``head``."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.backbone = TinyConvNeXt()
        self.head = nn.Linear(16, classes)

    def forward(self, inputs, targets=None, mode="tensor"):
        logits = self.head(self.backbone(inputs).mean((2, 3)))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, targets))
        return logits


def image_data(n: int = 64, classes: int = 4, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, classes, (n,), generator=generator)
    inputs = torch.randn(n, 3, 8, 8, generator=generator) + targets.view(-1, 1, 1, 1) * 0.5
    return dict(inputs=inputs, targets=targets)
