"""OpenMMLab building blocks, reproduced with their class names, child names and order.

Only what a parameter table shows is kept: the modules that own parameters and the
containers above them (activations are kept where they shift ``nn.Sequential`` indices).
Upstream files (mmcv 2.1.0, mmengine 0.10.7, mmdet 3.3.0):
mmcv/cnn/bricks/{conv_module,depthwise_separable_conv_module,wrappers,transformer}.py,
mmcv/ops/multi_scale_deform_attn.py, mmdet/models/backbones/resnet.py,
mmdet/models/layers/res_layer.py, mmdet/models/necks/{fpn,channel_mapper}.py.
"""
from torch import nn

NORMS = {"BN": ("bn", nn.BatchNorm2d), "SyncBN": ("bn", nn.SyncBatchNorm),
         "GN": ("gn", lambda c: nn.GroupNorm(32, c))}


def norm_layer(kind: str, channels: int, requires_grad: bool = True) -> nn.Module:
    """mmcv ``build_norm_layer``: the layer, with ``requires_grad`` applied to its params."""
    layer = NORMS[kind][1](channels)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


class Linear(nn.Linear):
    """mmcv.cnn.bricks.wrappers.Linear."""


class ConvModule(nn.Module):
    """mmcv ConvModule: ``conv``, then the norm under its abbreviation (``bn``/``gn``), then
    ``activate``; the conv has a bias only without a norm (``bias='auto'``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 norm="BN", act=nn.ReLU, bias="auto", transposed=False):
        super().__init__()
        bias = norm is None if bias == "auto" else bias
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel_size, stride, padding,
                         groups=groups, bias=bias)
        if norm is not None:
            self.add_module(NORMS[norm][0], norm_layer(norm, out_channels))
        if act is not None:
            self.activate = act()


class DepthwiseSeparableConvModule(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, **kwargs):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel_size, stride, padding,
                                         groups=in_channels, **kwargs)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, **kwargs)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, norm_grad=True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer("BN", planes, norm_grad)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer("BN", planes, norm_grad)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, norm_grad=True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer("BN", planes, norm_grad)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer("BN", planes, norm_grad)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer("BN", planes * 4, norm_grad)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


class ResLayer(nn.Sequential):
    def __init__(self, block, inplanes, planes, num_blocks, stride, norm_grad=True):
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                norm_layer("BN", planes * block.expansion, norm_grad))
        blocks = [block(inplanes, planes, stride, downsample, norm_grad)]
        blocks += [block(planes * block.expansion, planes, norm_grad=norm_grad)
                   for _ in range(1, num_blocks)]
        super().__init__(*blocks)


class ResNet(nn.Module):
    """mmdet/mmpretrain ResNet; ``frozen_stages`` freezes the stem and the first stages."""
    arch = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}

    def __init__(self, depth=50, frozen_stages=-1, norm_grad=True):
        super().__init__()
        block, stage_blocks = self.arch[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer("BN", 64, norm_grad)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, num_blocks in enumerate(stage_blocks):
            planes = 64 * 2 ** i
            self.add_module(f"layer{i + 1}", ResLayer(block, inplanes, planes, num_blocks,
                                                      1 if i == 0 else 2, norm_grad))
            inplanes = planes * block.expansion
        frozen = [self.conv1, self.bn1] if frozen_stages >= 0 else []
        frozen += [getattr(self, f"layer{i}") for i in range(1, frozen_stages + 1)]
        for module in frozen:
            for param in module.parameters():
                param.requires_grad = False


class FPN(nn.Module):
    def __init__(self, in_channels, out_channels=256, num_outs=5, start_level=0,
                 add_extra_convs=False, norm=None):
        super().__init__()
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for channels in in_channels[start_level:]:
            self.lateral_convs.append(ConvModule(channels, out_channels, 1, norm=norm, act=None))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1, norm=norm,
                                             act=None))
        extra_levels = num_outs - len(in_channels) + start_level
        for i in range(extra_levels if add_extra_convs else 0):
            channels = in_channels[-1] if i == 0 and add_extra_convs == "on_input" else out_channels
            self.fpn_convs.append(ConvModule(channels, out_channels, 3, 2, 1, norm=norm, act=None))


class ChannelMapper(nn.Module):
    def __init__(self, in_channels, out_channels=256, kernel_size=3, norm=None, act=nn.ReLU,
                 num_outs=None):
        super().__init__()
        self.convs = nn.ModuleList(
            ConvModule(c, out_channels, kernel_size, padding=(kernel_size - 1) // 2, norm=norm,
                       act=act) for c in in_channels)
        if num_outs and num_outs > len(in_channels):
            self.extra_convs = nn.ModuleList(
                ConvModule(in_channels[-1] if i == len(in_channels) else out_channels,
                           out_channels, 3, 2, 1, norm=norm, act=act)
                for i in range(len(in_channels), num_outs))


class Sequential(nn.Sequential):
    """mmengine.model.Sequential."""


class ModuleList(nn.ModuleList):
    """mmengine.model.ModuleList."""


class FFN(nn.Module):
    """mmcv FFN: ``layers`` = [Sequential(Linear, act, Dropout)] * (num_fcs - 1), Linear,
    Dropout."""

    def __init__(self, embed_dims=256, feedforward_channels=1024, num_fcs=2):
        super().__init__()
        layers, in_channels = [], embed_dims
        for _ in range(num_fcs - 1):
            layers.append(Sequential(Linear(in_channels, feedforward_channels),
                                     nn.ReLU(inplace=True), nn.Dropout()))
            in_channels = feedforward_channels
        layers += [Linear(feedforward_channels, embed_dims), nn.Dropout()]
        self.layers = Sequential(*layers)
        self.dropout_layer = nn.Identity()
        self.gamma2 = nn.Identity()


class MultiheadAttention(nn.Module):
    """mmcv's wrapper around torch's ``nn.MultiheadAttention`` (``attn``)."""

    def __init__(self, embed_dims=256, num_heads=8):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads)
        self.proj_drop = nn.Dropout()
        self.dropout_layer = nn.Dropout()


class MultiScaleDeformableAttention(nn.Module):
    def __init__(self, embed_dims=256, num_heads=8, num_levels=4, num_points=4):
        super().__init__()
        self.dropout = nn.Dropout()
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
