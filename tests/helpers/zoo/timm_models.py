"""timm 1.0.31 classifiers: DeiT-tiny distilled, ViT-S/16, EfficientNet-B0, ConvNeXt-T.

Like timm's own, each model names its classifier modules in ``pretrained_cfg['classifier']``
and returns them from ``get_classifier()``. Upstream: timm/models/{vision_transformer,deit,
efficientnet,_efficientnet_blocks,_efficientnet_builder,convnext}.py,
timm/layers/{patch_embed,attention,mlp,squeeze_excite,norm,norm_act,classifier}.py.
"""
import torch
from torch import nn

from .registry import ZooModel


class TimmModel(nn.Module):
    classifier_names: tuple[str, ...]

    def __init__(self):
        super().__init__()
        names = self.classifier_names
        self.pretrained_cfg = {"classifier": names[0] if len(names) == 1 else names}

    @property
    def default_cfg(self):
        return self.pretrained_cfg

    def get_classifier(self):
        found = tuple(self.get_submodule(name) for name in self.classifier_names)
        return found[0] if len(found) == 1 else found


class PatchEmbed(nn.Module):
    def __init__(self, dim, patch=16):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.norm = nn.Identity()


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout()


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout()
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout()


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)


class VisionTransformer(TimmModel):
    classifier_names = ("head",)

    def __init__(self, dim=384, depth=12, tokens=197):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.Sequential(*(Block(dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.fc_norm = nn.Identity()
        self.head = nn.Linear(dim, 1000)


class VisionTransformerDistilled(VisionTransformer):
    """DeiT distilled: a distillation token and a second classifier, averaged at inference."""
    classifier_names = ("head", "head_dist")

    def __init__(self, dim=192, depth=12):
        super().__init__(dim, depth, tokens=198)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.head_dist = nn.Linear(dim, 1000)


class BatchNormAct2d(nn.BatchNorm2d):
    pass


class SqueezeExcite(nn.Module):
    """The gate: reduce (1x1 conv), act, expand (1x1 conv), sigmoid, multiply."""

    def __init__(self, channels, reduced):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act1 = nn.SiLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, c_in, c_out, kernel):
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False)
        self.bn1 = BatchNormAct2d(c_in)
        self.se = SqueezeExcite(c_in, c_in // 4)
        self.conv_pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = BatchNormAct2d(c_out)


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, kernel, expand=6):
        super().__init__()
        mid = c_in * expand
        self.conv_pw = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, padding=kernel // 2, groups=mid, bias=False)
        self.bn2 = BatchNormAct2d(mid)
        self.se = SqueezeExcite(mid, c_in // 4)
        self.conv_pwl = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = BatchNormAct2d(c_out)


class EfficientNet(TimmModel):
    """efficientnet_b0: (repeats, kernel, channels) per stage; SE on every block."""
    classifier_names = ("classifier",)
    stages = ((1, 3, 16), (2, 3, 24), (2, 5, 40), (3, 3, 80), (3, 5, 112), (4, 5, 192),
              (1, 3, 320))

    def __init__(self):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = BatchNormAct2d(32)
        stages, c_in = [], 32
        for i, (repeats, kernel, c_out) in enumerate(self.stages):
            block = DepthwiseSeparableConv if i == 0 else InvertedResidual
            stage = []
            for _ in range(repeats):
                stage.append(block(c_in, c_out, kernel))
                c_in = c_out
            stages.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = BatchNormAct2d(1280)
        self.classifier = nn.Linear(1280, 1000)


class LayerNorm2d(nn.LayerNorm):
    pass


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma = nn.Parameter(torch.ones(dim))


class ConvNeXtStage(nn.Module):
    def __init__(self, c_in, c_out, depth):
        super().__init__()
        self.downsample = (nn.Identity() if c_in == c_out else
                           nn.Sequential(LayerNorm2d(c_in), nn.Conv2d(c_in, c_out, 2, 2)))
        self.blocks = nn.Sequential(*(ConvNeXtBlock(c_out) for _ in range(depth)))


class NormMlpClassifierHead(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.flatten = nn.Flatten(1)
        self.pre_logits = nn.Identity()
        self.drop = nn.Dropout()
        self.fc = nn.Linear(dim, 1000)


class ConvNeXt(TimmModel):
    """convnext_tiny: depths (3, 3, 9, 3), widths (96, 192, 384, 768)."""
    classifier_names = ("head.fc",)

    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0]))
        self.stages = nn.Sequential(*(ConvNeXtStage(dims[max(i - 1, 0)], dims[i], depths[i])
                                      for i in range(4)))
        self.norm_pre = nn.Identity()
        self.head = NormMlpClassifierHead(dims[-1])


_VIT = {"*_token": "AdamW", "pos_embed": "AdamW", "patch_embed.proj.weight": "AdamW",
        "blocks.*": "Muon", "head.weight": "AdamW"}

MODELS = [
    ZooModel("timm_deit_tiny_distilled", VisionTransformerDistilled,
             "timm 1.0.31 deit_tiny_distilled_patch16_224",
             {**_VIT, "head_dist.weight": "AdamW"},
             "5c84215e614be0b9477c2452c77f3fc66aac42633e94965f7fa28dcbcc88f04a"),
    ZooModel("timm_vit_small", VisionTransformer, "timm 1.0.31 vit_small_patch16_224", _VIT,
             "a4356a3c89160be0ce9323dce6f23cef808aae12db8e670c171b47feda13e1a7"),
    ZooModel("timm_efficientnet_b0", EfficientNet, "timm 1.0.31 efficientnet_b0",
             {"conv_stem.weight": "AdamW",
              "blocks.*.conv_dw.weight": "AdamW",  # depthwise
              # squeeze-excitation gates are hidden 1x1 convs: Muon (docs/routing.md)
              "blocks.*.se.conv_*.weight": "Muon",
              "blocks.*.conv_pw*.weight": "Muon", "conv_head.weight": "Muon",
              "classifier.weight": "AdamW"},
             "e521093f59f5b099df95d7b3181e104d03670761a9042aa6b4920dde6d663d23"),
    ZooModel("timm_convnext_tiny", ConvNeXt, "timm 1.0.31 convnext_tiny",
             {"stem.0.weight": "AdamW", "stages.*.conv_dw.weight": "AdamW",
              "stages.*.mlp.fc*.weight": "Muon", "stages.*.downsample.1.weight": "Muon",
              "head.fc.weight": "AdamW"},
             "9b83478f8ede979fbab4a05b91dbfbb0e2edbf0f05e0a17bac276a888cfe336c"),
]
