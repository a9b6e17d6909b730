"""mmpretrain 1.2.0 ImageClassifiers: ResNet-50, Swin-T, MobileNetV2, ViT-B/16 (its head has a
hidden ``pre_logits`` layer) and DeiT-tiny distilled (its two classifiers share one
``nn.Sequential`` that is never run as a chain).

Upstream: mmpretrain/models/classifiers/image.py, mmpretrain/models/backbones/{resnet,
swin_transformer,mobilenet_v2,vision_transformer,deit}.py, mmpretrain/models/utils/
{attention,embed}.py, mmpretrain/models/heads/{linear_head,vision_transformer_head,
deit_head}.py, and the configs named per model.
"""
from collections import OrderedDict

import torch
from torch import nn

from .openmmlab import FFN, ConvModule, ModuleList, ResNet, Sequential
from .registry import ZooModel


class GlobalAveragePooling(nn.Module):
    """No parameters."""


class LinearClsHead(nn.Module):
    def __init__(self, in_channels, num_classes=1000):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)


class VisionTransformerClsHead(nn.Module):
    def __init__(self, in_channels, hidden_dim=None, num_classes=1000):
        super().__init__()
        if hidden_dim is None:
            layers = [("head", nn.Linear(in_channels, num_classes))]
        else:
            layers = [("pre_logits", nn.Linear(in_channels, hidden_dim)), ("act", nn.Tanh()),
                      ("head", nn.Linear(hidden_dim, num_classes))]
        self.layers = Sequential(OrderedDict(layers))


class DeiTClsHead(VisionTransformerClsHead):
    def __init__(self, in_channels, num_classes=1000):
        super().__init__(in_channels, num_classes=num_classes)
        self.layers.add_module("head_dist", nn.Linear(in_channels, num_classes))


class ImageClassifier(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.neck = GlobalAveragePooling()
        self.head = head


class PatchEmbed(nn.Module):
    def __init__(self, dim, patch, norm):
        super().__init__()
        self.projection = nn.Conv2d(3, dim, patch, patch)
        if norm:
            self.norm = nn.LayerNorm(dim)


class WindowMSA(nn.Module):
    def __init__(self, dim, heads, window=7):
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, heads))
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout()


class ShiftWindowMSA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.w_msa = WindowMSA(dim, heads)


class SwinBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftWindowMSA(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FFN(dim, 4 * dim)


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)


class SwinBlockSequence(nn.Module):
    def __init__(self, dim, depth, heads, downsample):
        super().__init__()
        self.blocks = ModuleList(SwinBlock(dim, heads) for _ in range(depth))
        if downsample:
            self.downsample = PatchMerging(dim)


class SwinTransformer(nn.Module):
    """arch tiny: width 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24); out_indices=(3,)."""

    def __init__(self, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)):
        super().__init__()
        self.patch_embed = PatchEmbed(dim, 4, norm=True)
        self.stages = ModuleList(
            SwinBlockSequence(dim * 2 ** i, depth, heads[i], downsample=i < 3)
            for i, depth in enumerate(depths))
        self.norm3 = nn.LayerNorm(dim * 8)


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, expand):
        super().__init__()
        mid = c_in * expand
        layers = [ConvModule(c_in, mid, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [ConvModule(mid, mid, 3, padding=1, groups=mid, act=nn.ReLU6),
                   ConvModule(mid, c_out, 1, act=None)]
        self.conv = nn.Sequential(*layers)


class MobileNetV2(nn.Module):
    arch = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))

    def __init__(self):
        super().__init__()
        self.conv1 = ConvModule(3, 32, 3, 2, 1, act=nn.ReLU6)
        c_in = 32
        for i, (expand, c_out, blocks) in enumerate(self.arch):
            layer = []
            for _ in range(blocks):
                layer.append(InvertedResidual(c_in, c_out, expand))
                c_in = c_out
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.conv2 = ConvModule(320, 1280, 1, act=nn.ReLU6)


class MultiheadAttention(nn.Module):
    """mmpretrain's: one fused ``qkv`` Linear and ``proj``."""

    def __init__(self, dim):
        super().__init__()
        self.attn_drop = nn.Dropout()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout()


class TransformerEncoderLayer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = FFN(dim, 4 * dim)


class VisionTransformer(nn.Module):
    def __init__(self, dim, depth=12, tokens=197):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.patch_embed = PatchEmbed(dim, 16, norm=False)
        self.layers = ModuleList(TransformerEncoderLayer(dim) for _ in range(depth))
        self.pre_norm = nn.Identity()
        self.ln1 = nn.LayerNorm(dim)


class DistilledVisionTransformer(VisionTransformer):
    def __init__(self, dim):
        super().__init__(dim, tokens=198)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))


def resnet50():
    return ImageClassifier(ResNet(50), LinearClsHead(2048))


def swin_t():
    return ImageClassifier(SwinTransformer(), LinearClsHead(768))


def mobilenet_v2():
    return ImageClassifier(MobileNetV2(), LinearClsHead(1280))


def vit_b16():
    return ImageClassifier(VisionTransformer(768), VisionTransformerClsHead(768, 3072))


def deit_tiny_distilled():
    return ImageClassifier(DistilledVisionTransformer(192), DeiTClsHead(192))


MODELS = [
    ZooModel("mmpretrain_resnet50", resnet50,
             "mmpretrain 1.2.0 configs/resnet/resnet50_8xb32_in1k.py",
             {"backbone.conv1.weight": "AdamW", "backbone.layer*": "Muon",
              "head.fc.weight": "AdamW"},
             "9681d6c05d1256919405ed5a43ff422d0ef4ba0075232298405f986642a7ca03"),
    ZooModel("mmpretrain_swin_t", swin_t,
             "mmpretrain 1.2.0 configs/swin_transformer/swin-tiny_16xb64_in1k.py",
             {"backbone.patch_embed.projection.weight": "AdamW",
              "*.relative_position_bias_table": "AdamW",
              "backbone.stages.*": "Muon", "head.fc.weight": "AdamW"},
             "81b0836062365b4a67f99bde6ae16aab174fc5de61fe7f86aefc8f81a338c4bc"),
    ZooModel("mmpretrain_mobilenet_v2", mobilenet_v2,
             "mmpretrain 1.2.0 configs/mobilenet_v2/mobilenet-v2_8xb32_in1k.py",
             {"backbone.conv1.conv.weight": "AdamW",
              # the depthwise 3x3 of each block: the first conv when expand == 1, else second
              "backbone.layer1.0.conv.0.conv.weight": "AdamW",
              "backbone.layer[2-7].*.conv.1.conv.weight": "AdamW",
              "backbone.layer*": "Muon", "backbone.conv2.conv.weight": "Muon",
              "head.fc.weight": "AdamW"},
             "1ec75f37e1636dd1cbe445b75202db0988fffdc5d5791b5b8465d5f433f0a608"),
    ZooModel("mmpretrain_vit_b16", vit_b16,
             "mmpretrain 1.2.0 configs/vision_transformer/vit-base-p16_64xb64_in1k.py",
             {"backbone.*_token": "AdamW", "backbone.pos_embed": "AdamW",
              "backbone.patch_embed.projection.weight": "AdamW", "backbone.layers.*": "Muon",
              "head.layers.pre_logits.weight": "Muon", "head.layers.head.weight": "AdamW"},
             "c43668a8c5fbe389d8379befa16efca3abbfc99d124b1af0677e36129169a216"),
    ZooModel("mmpretrain_deit_tiny_distilled", deit_tiny_distilled,
             "mmpretrain 1.2.0 configs/deit/deit-tiny-distilled_4xb256_in1k.py",
             {"backbone.*_token": "AdamW", "backbone.pos_embed": "AdamW",
              "backbone.patch_embed.projection.weight": "AdamW", "backbone.layers.*": "Muon",
              "head.layers.head.weight": "AdamW", "head.layers.head_dist.weight": "AdamW"},
             "4089d53b93ca53d031b858f13dc0f8cca5cc2943be97c1085b24d5967df6727a"),
]
