"""Faithful small trees of three families whose structure once fooled Muon routing, with their
forward passes (the loss graph needs them). Module names, nesting and branch layout follow:

- RepVGG: ``repvgg.py`` of DingXiaoH/RepVGG (``RepVGGBlock``: ``rbr_identity`` BatchNorm,
  ``rbr_dense`` and ``rbr_1x1`` conv-BN branches summed; ``stage0`` reads the image with both);
- MobileOne: ``mobileone.py`` of apple/ml-mobileone (``MobileOneBlock``: ``rbr_skip``,
  ``rbr_conv`` list of conv-BN branches, ``rbr_scale`` 1x1 conv-BN; depthwise then pointwise
  blocks per stage; ``stage0`` reads the image with all its branches);
- LeViT: ``levit.py`` of facebookresearch/LeViT (``Conv2d_BN`` stem with Hardswish, attention
  with ``attention_biases`` indexed by ``attention_bias_idxs``, ``Linear_BN`` projections,
  ``BN_Linear`` ``head`` and distillation ``head_dist``, averaged).

Widths and depths are tiny; the parameter names are the upstream ones.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn


def conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups=1) -> nn.Sequential:
    block = nn.Sequential()
    block.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                       groups=groups, bias=False))
    block.add_module("bn", nn.BatchNorm2d(out_channels))
    return block


def staged_forward(model, x):
    """RepVGG's and MobileOne's forward: ``stage0``, ``stage1``, ... then pool and classify."""
    for index in itertools.count():
        stage = getattr(model, f"stage{index}", None)
        if stage is None:
            return model.linear(model.gap(x).flatten(1))
        x = stage(x)


class RepVGGBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, groups=1):
        super().__init__()
        self.nonlinearity = nn.ReLU()
        self.rbr_identity = (nn.BatchNorm2d(in_channels)
                             if in_channels == out_channels and stride == 1 else None)
        self.rbr_dense = conv_bn(in_channels, out_channels, 3, stride, 1, groups)
        self.rbr_1x1 = conv_bn(in_channels, out_channels, 1, stride, 0, groups)

    def forward(self, x):
        identity = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.nonlinearity(self.rbr_dense(x) + self.rbr_1x1(x) + identity)


class RepVGG(nn.Module):
    def __init__(self, widths=(8, 8, 16), blocks=(1, 2), num_classes=5):
        super().__init__()
        self.stage0 = RepVGGBlock(3, widths[0], stride=2)
        in_channels = widths[0]
        for index, (width, count) in enumerate(zip(widths[1:], blocks), start=1):
            stage = [RepVGGBlock(in_channels if i == 0 else width, width, 2 if i == 0 else 1)
                     for i in range(count)]
            self.add_module(f"stage{index}", nn.Sequential(*stage))
            in_channels = width
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels, num_classes)

    forward = staged_forward


class MobileOneBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 num_conv_branches=1):
        super().__init__()
        self.se = nn.Identity()
        self.activation = nn.ReLU()
        self.rbr_skip = (nn.BatchNorm2d(in_channels)
                         if out_channels == in_channels and stride == 1 else None)
        self.rbr_conv = nn.ModuleList(
            conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups)
            for _ in range(num_conv_branches))
        self.rbr_scale = (conv_bn(in_channels, out_channels, 1, stride, 0, groups)
                          if kernel_size > 1 else None)

    def forward(self, x):
        out = 0 if self.rbr_skip is None else self.rbr_skip(x)
        if self.rbr_scale is not None:
            out = out + self.rbr_scale(x)
        for branch in self.rbr_conv:
            out = out + branch(x)
        return self.activation(self.se(out))


class MobileOne(nn.Module):
    def __init__(self, widths=(8, 16, 16), blocks=(1, 1), num_conv_branches=2, num_classes=5):
        super().__init__()
        self.in_planes = widths[0]
        self.stage0 = MobileOneBlock(3, self.in_planes, 3, stride=2, padding=1)
        for index, (width, count) in enumerate(zip(widths[1:], blocks), start=1):
            layers = []
            for stride in [2] + [1] * (count - 1):
                layers.append(MobileOneBlock(self.in_planes, self.in_planes, 3, stride, 1,
                                             groups=self.in_planes,
                                             num_conv_branches=num_conv_branches))  # depthwise
                layers.append(MobileOneBlock(self.in_planes, width, 1,
                                             num_conv_branches=num_conv_branches))  # pointwise
                self.in_planes = width
            self.add_module(f"stage{index}", nn.Sequential(*layers))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(self.in_planes, num_classes)

    forward = staged_forward


class Conv2d_BN(nn.Sequential):  # noqa: N801  (the upstream name)
    def __init__(self, a, b, ks=1, stride=1, pad=0):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class Linear_BN(nn.Sequential):  # noqa: N801
    def __init__(self, a, b):
        super().__init__()
        self.add_module("c", nn.Linear(a, b, bias=False))
        self.add_module("bn", nn.BatchNorm1d(b))

    def forward(self, x):
        linear, norm = self._modules.values()
        x = linear(x)
        return norm(x.flatten(0, 1)).reshape_as(x)


class BN_Linear(nn.Sequential):  # noqa: N801
    def __init__(self, a, b):
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(a))
        self.add_module("l", nn.Linear(a, b))


class Attention(nn.Module):
    def __init__(self, dim, key_dim, num_heads, attn_ratio, resolution):
        super().__init__()
        self.num_heads, self.key_dim, self.scale = num_heads, key_dim, key_dim ** -0.5
        self.d = int(attn_ratio * key_dim)
        self.qkv = Linear_BN(dim, num_heads * (2 * key_dim + self.d))
        self.proj = nn.Sequential(nn.Hardswish(), Linear_BN(self.d * num_heads, dim))
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets, idxs = {}, []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs",
                             torch.tensor(idxs).view(len(points), len(points)))

    def forward(self, x):
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, self.num_heads, -1).split(
            [self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attention = (q @ k.transpose(-2, -1)) * self.scale \
            + self.attention_biases[:, self.attention_bias_idxs]
        x = (attention.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj(x)


class Residual(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x + self.m(x)


class LeViT(nn.Module):
    def __init__(self, image=32, embed_dim=16, key_dim=4, num_heads=2, depth=2, num_classes=5):
        super().__init__()
        self.patch_embed = nn.Sequential(Conv2d_BN(3, embed_dim // 4, 3, 2, 1), nn.Hardswish(),
                                         Conv2d_BN(embed_dim // 4, embed_dim // 2, 3, 2, 1),
                                         nn.Hardswish(),
                                         Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1))
        resolution = image // 8
        blocks = []
        for _ in range(depth):
            blocks.append(Residual(Attention(embed_dim, key_dim, num_heads, 2, resolution)))
            blocks.append(Residual(nn.Sequential(Linear_BN(embed_dim, 2 * embed_dim),
                                                 nn.Hardswish(), Linear_BN(2 * embed_dim, embed_dim))))
        self.blocks = nn.Sequential(*blocks)
        self.head = BN_Linear(embed_dim, num_classes)
        self.head_dist = BN_Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.blocks(self.patch_embed(x).flatten(2).transpose(1, 2)).mean(1)
        return (self.head(x) + self.head_dist(x)) / 2


#: name -> (build, tensors with >= 2 dims that belong on AdamW; every other one on Muon)
REPARAM_MODELS = {
    "repvgg": (RepVGG, ("stage0.rbr_dense.conv.weight", "stage0.rbr_1x1.conv.weight",
                        "linear.weight")),
    "mobileone": (MobileOne, ("stage0.rbr_conv.0.conv.weight", "stage0.rbr_scale.conv.weight",
                              # depthwise blocks: the first of each stage (one block per stage)
                              "stage*.0.rbr_conv.*.conv.weight", "stage*.0.rbr_scale.conv.weight",
                              "linear.weight")),
    "levit": (LeViT, ("patch_embed.0.c.weight", "blocks.*.m.attention_biases", "head.l.weight",
                      "head_dist.l.weight")),
}
