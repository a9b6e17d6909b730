"""Two small classifiers for the demo, as mmengine ``BaseModel``s.

They are small enough to train in a minute on two CPU cores and are built from the
parts the optimizer routing has to tell apart, under the usual OpenMMLab names:

- ``DemoConvNet``: ``stem`` (the conv that reads the image), ``layers`` of residual
  blocks (3×3 conv, depthwise 3×3 conv, 1×1 conv, each with BatchNorm), and a ``head``
  classifier.
- ``DemoTransformer``: a ``patch_embed`` conv over 4×4 patches, a ``cls_token``, a
  ``pos_embed``, ``blocks`` (LayerNorm, attention ``qkv``/``proj``, MLP ``fc1``/``fc2``),
  a final ``norm`` and a ``head``.

``forward(inputs, data_samples, mode)`` follows mmengine: ``'loss'`` returns
``dict(loss=...)``, ``'predict'`` one ``dict(pred_label, gt_label)`` per image (what
``DemoAccuracy`` reads), ``'tensor'`` the logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn


class _Classifier(BaseModel):
    """The mmengine side shared by the demo models: loss, predictions, logits."""

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "tensor"):
        logits = self.logits(inputs)
        if mode == "tensor":
            return logits
        if data_samples is None:
            raise ValueError(f"mode={mode!r} needs the labels (data_samples)")
        labels = torch.as_tensor(data_samples, device=logits.device).long()
        if mode == "loss":
            return dict(loss=F.cross_entropy(logits, labels))
        if mode == "predict":
            predicted = logits.argmax(dim=1)
            return [dict(pred_label=int(p), gt_label=int(g)) for p, g in zip(predicted, labels)]
        raise ValueError(f"unknown mode {mode!r}: expected 'loss', 'predict' or 'tensor'")

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def logits_module(self) -> nn.Module:
        """The module whose output is the logits (SophiaG estimates its Hessian from them)."""
        return self.head


class ConvBN(nn.Module):
    """conv → BatchNorm → optional ReLU (``conv``, ``bn`` like mmcv's ConvModule)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    """3×3 conv (strided) → depthwise 3×3 → 1×1, with a 1×1 projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.conv1 = ConvBN(in_channels, out_channels, 3, stride)
        self.dwconv = ConvBN(out_channels, out_channels, 3, groups=out_channels)
        self.pwconv = ConvBN(out_channels, out_channels, 1, act=False)
        self.downsample = (ConvBN(in_channels, out_channels, 1, stride, act=False)
                           if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x):
        out = self.pwconv(self.dwconv(self.conv1(x)))
        return F.relu(out + self.downsample(x))


@MODELS.register_module()
class DemoConvNet(_Classifier):
    """A small residual conv net: ``stem`` → ``layers`` → global pool → ``head``.

    Args:
        num_classes: number of output classes.
        in_channels: image channels.
        widths: channels of the stem and of each stage (each stage halves the resolution).
        stem_stride: stride of the stem conv (2: a 32×32 image becomes 16×16 feature maps).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=(32, 64, 128),
                 stem_stride: int = 2, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        widths = tuple(widths)
        self.stem = ConvBN(in_channels, widths[0], 3, stem_stride)
        self.layers = nn.Sequential(*(ResBlock(widths[i], widths[i + 1])
                                      for i in range(len(widths) - 1)))
        self.head = nn.Linear(widths[-1], num_classes)

    def logits(self, inputs):
        features = self.layers(self.stem(inputs))
        return self.head(features.mean(dim=(2, 3)))


class Attention(nn.Module):

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@MODELS.register_module()
class DemoTransformer(_Classifier):
    """A tiny ViT: 4×4 patches as tokens, a cls token, learned positions, ``depth`` blocks.

    Args:
        num_classes: number of output classes.
        image_size: side of the (square) input images.
        patch_size: side of a patch (one token).
        embed_dim, depth, num_heads, mlp_ratio: the usual ViT sizes.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, image_size: int = 32,
                 patch_size: int = 4, embed_dim: int = 64, depth: int = 2, num_heads: int = 4,
                 mlp_ratio: float = 2.0, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size "
                             f"{patch_size}")
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*(TransformerBlock(embed_dim, num_heads, mlp_ratio)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def logits(self, inputs):
        tokens = self.patch_embed(inputs).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])
