"""One-stage detectors as mmdet 3.3.0 builds them from the COCO configs: RetinaNet, FCOS,
YOLOv3, CenterNet and RTMDet-tiny.

Upstream: mmdet/models/dense_heads/{anchor_head,retina_head,anchor_free_head,fcos_head,
yolo_head,centernet_head,rtmdet_head}.py, mmdet/models/backbones/{darknet,cspnext}.py,
mmdet/models/necks/{yolo_neck,ct_resnet_neck,cspnext_pafpn}.py,
mmdet/models/layers/{csp_layer,se_layer}.py, mmdet/models/backbones/csp_darknet.py
(SPPBottleneck), mmcv/cnn/bricks/scale.py.
"""
import torch
from torch import nn

from .openmmlab import FPN, ConvModule, DepthwiseSeparableConvModule, ResNet
from .registry import ZooModel


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))


class RetinaHead(nn.Module):
    def __init__(self, num_classes=80, num_anchors=9):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.cls_convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1, norm=None)
                                       for _ in range(4))
        self.reg_convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1, norm=None)
                                       for _ in range(4))
        self.retina_cls = nn.Conv2d(256, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(256, num_anchors * 4, 3, padding=1)


class RetinaNet(nn.Module):
    """configs/retinanet/retinanet_r50_fpn_1x_coco.py."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNet(50, frozen_stages=1)
        self.neck = FPN([256, 512, 1024, 2048], 256, num_outs=5, start_level=1,
                        add_extra_convs="on_input")
        self.bbox_head = RetinaHead()


class FCOSHead(nn.Module):
    def __init__(self, num_classes=80):
        super().__init__()
        self.cls_convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1, norm="GN")
                                       for _ in range(4))
        self.reg_convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1, norm="GN")
                                       for _ in range(4))
        self.conv_cls = nn.Conv2d(256, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(256, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(256, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(5))


class FCOS(nn.Module):
    """configs/fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py (caffe-style ResNet, frozen BN)."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNet(50, frozen_stages=1, norm_grad=False)
        self.neck = FPN([256, 512, 1024, 2048], 256, num_outs=5, start_level=1,
                        add_extra_convs="on_output")
        self.bbox_head = FCOSHead()


def _leaky(*args, **kwargs):
    return ConvModule(*args, act=nn.LeakyReLU, **kwargs)


class ResBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = _leaky(channels, channels // 2, 1)
        self.conv2 = _leaky(channels // 2, channels, 3, padding=1)


class Darknet(nn.Module):
    def __init__(self, blocks=(1, 2, 8, 8, 4),
                 channels=((32, 64), (64, 128), (128, 256), (256, 512), (512, 1024))):
        super().__init__()
        self.conv1 = _leaky(3, 32, 3, padding=1)
        for i, (repeat, (c_in, c_out)) in enumerate(zip(blocks, channels)):
            stage = nn.Sequential()
            stage.add_module("conv", _leaky(c_in, c_out, 3, 2, 1))
            for idx in range(repeat):
                stage.add_module(f"res{idx}", ResBlock(c_out))
            self.add_module(f"conv_res_block{i + 1}", stage)


class DetectionBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        double = out_channels * 2
        self.conv1 = _leaky(in_channels, out_channels, 1)
        self.conv2 = _leaky(out_channels, double, 3, padding=1)
        self.conv3 = _leaky(double, out_channels, 1)
        self.conv4 = _leaky(out_channels, double, 3, padding=1)
        self.conv5 = _leaky(double, out_channels, 1)


class YOLOV3Neck(nn.Module):
    def __init__(self, in_channels=(1024, 512, 256), out_channels=(512, 256, 128)):
        super().__init__()
        self.detect1 = DetectionBlock(in_channels[0], out_channels[0])
        for i in range(1, 3):
            self.add_module(f"conv{i}", _leaky(out_channels[i - 1], out_channels[i], 1))
            self.add_module(f"detect{i + 1}",
                            DetectionBlock(in_channels[i] + out_channels[i], out_channels[i]))


class YOLOV3Head(nn.Module):
    def __init__(self, in_channels=(512, 256, 128), out_channels=(1024, 512, 256),
                 num_classes=80, num_anchors=3):
        super().__init__()
        self.convs_bridge = nn.ModuleList()
        self.convs_pred = nn.ModuleList()
        for c_in, c_out in zip(in_channels, out_channels):
            self.convs_bridge.append(_leaky(c_in, c_out, 3, padding=1))
            self.convs_pred.append(nn.Conv2d(c_out, num_anchors * (5 + num_classes), 1))


class YOLOV3(nn.Module):
    """configs/yolo/yolov3_d53_8xb8-ms-608-273e_coco.py."""

    def __init__(self):
        super().__init__()
        self.backbone = Darknet()
        self.neck = YOLOV3Neck()
        self.bbox_head = YOLOV3Head()


class CTResNetNeck(nn.Module):
    def __init__(self, in_channels=512, filters=(256, 128, 64), kernels=(4, 4, 4)):
        super().__init__()
        layers = []
        for channels, kernel in zip(filters, kernels):
            layers.append(ConvModule(in_channels, channels, 3, padding=1))
            layers.append(ConvModule(channels, channels, kernel, 2, 1, transposed=True))
            in_channels = channels
        self.deconv_layers = nn.Sequential(*layers)


class CenterNetHead(nn.Module):
    def __init__(self, in_channels=64, feat_channels=64, num_classes=80):
        super().__init__()

        def branch(out_channels):
            return nn.Sequential(nn.Conv2d(in_channels, feat_channels, 3, padding=1),
                                 nn.ReLU(inplace=True), nn.Conv2d(feat_channels, out_channels, 1))
        self.heatmap_head = branch(num_classes)
        self.wh_head = branch(2)
        self.offset_head = branch(2)


class CenterNet(nn.Module):
    """configs/centernet/centernet_r18_8xb16-crop512-140e_coco.py (no DCN)."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNet(18)
        self.neck = CTResNetNeck()
        self.bbox_head = CenterNetHead()


def _silu(*args, **kwargs):
    return ConvModule(*args, norm="SyncBN", act=nn.SiLU, **kwargs)


class ChannelAttention(nn.Module):
    """A channel gate: pool, ``fc`` (a 1x1 conv), hard sigmoid, multiply."""

    def __init__(self, channels):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)


class CSPNeXtBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = _silu(channels, channels, 3, padding=1)
        self.conv2 = DepthwiseSeparableConvModule(channels, channels, 5, padding=2,
                                                  norm="SyncBN", act=nn.SiLU)


class CSPLayer(nn.Module):
    def __init__(self, in_channels, out_channels, num_blocks=1, channel_attention=False):
        super().__init__()
        mid = out_channels // 2
        self.main_conv = _silu(in_channels, mid, 1)
        self.short_conv = _silu(in_channels, mid, 1)
        self.final_conv = _silu(2 * mid, out_channels, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid) for _ in range(num_blocks)))
        if channel_attention:
            self.attention = ChannelAttention(2 * mid)


class SPPBottleneck(nn.Module):
    def __init__(self, channels, kernel_sizes=(5, 9, 13)):
        super().__init__()
        mid = channels // 2
        self.conv1 = _silu(channels, mid, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)
        self.conv2 = _silu(mid * (len(kernel_sizes) + 1), channels, 1)


class CSPNeXt(nn.Module):
    """arch P5 with widen_factor 0.375 and deepen_factor 0.167 (one block per stage)."""

    def __init__(self, channels=(24, 48, 96, 192, 384)):
        super().__init__()
        self.stem = nn.Sequential(_silu(3, channels[0] // 2, 3, 2, 1),
                                  _silu(channels[0] // 2, channels[0] // 2, 3, 1, 1),
                                  _silu(channels[0] // 2, channels[0], 3, 1, 1))
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            stage = [_silu(c_in, c_out, 3, 2, 1)]
            if i == 3:
                stage.append(SPPBottleneck(c_out))
            stage.append(CSPLayer(c_out, c_out, channel_attention=True))
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))


class CSPNeXtPAFPN(nn.Module):
    def __init__(self, in_channels=(96, 192, 384), out_channels=96):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        for idx in range(len(in_channels) - 1, 0, -1):
            self.reduce_layers.append(_silu(in_channels[idx], in_channels[idx - 1], 1))
            self.top_down_blocks.append(CSPLayer(in_channels[idx - 1] * 2, in_channels[idx - 1]))
        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for idx in range(len(in_channels) - 1):
            self.downsamples.append(_silu(in_channels[idx], in_channels[idx], 3, 2, 1))
            self.bottom_up_blocks.append(CSPLayer(in_channels[idx] * 2, in_channels[idx + 1]))
        self.out_convs = nn.ModuleList(_silu(c, out_channels, 3, padding=1) for c in in_channels)


class RTMDetSepBNHead(nn.Module):
    """Per level: its own convs and BN, but the conv weights of every level are level 0's
    (``share_conv``), so only level 0's conv weights are parameters."""

    def __init__(self, channels=96, num_classes=80, levels=3, stacked_convs=2):
        super().__init__()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.rtm_cls = nn.ModuleList()
        self.rtm_reg = nn.ModuleList()
        for _ in range(levels):
            self.cls_convs.append(nn.ModuleList(_silu(channels, channels, 3, padding=1)
                                                for _ in range(stacked_convs)))
            self.reg_convs.append(nn.ModuleList(_silu(channels, channels, 3, padding=1)
                                                for _ in range(stacked_convs)))
            self.rtm_cls.append(nn.Conv2d(channels, num_classes, 1))
            self.rtm_reg.append(nn.Conv2d(channels, 4, 1))
        for level in range(levels):
            for i in range(stacked_convs):
                self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                self.reg_convs[level][i].conv = self.reg_convs[0][i].conv


class RTMDet(nn.Module):
    """configs/rtmdet/rtmdet_tiny_8xb32-300e_coco.py."""

    def __init__(self):
        super().__init__()
        self.backbone = CSPNeXt()
        self.neck = CSPNeXtPAFPN()
        self.bbox_head = RTMDetSepBNHead()


_RESNET_FPN = {"backbone.layer*.weight": "Muon", "neck.*": "Muon"}

MODELS = [
    ZooModel("retinanet", RetinaNet, "mmdet 3.3.0 configs/retinanet/retinanet_r50_fpn_1x_coco.py",
             {**_RESNET_FPN,
              "bbox_head.cls_convs.*": "Muon", "bbox_head.reg_convs.*": "Muon",
              "bbox_head.retina_cls.weight": "AdamW", "bbox_head.retina_reg.weight": "AdamW"},
             "8b4e9dfe3e0840350a50aef13df83206e4c8694e41d683e9c8d03b3ee6b8e6c5"),
    ZooModel("fcos", FCOS, "mmdet 3.3.0 configs/fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
             {**_RESNET_FPN,
              "bbox_head.cls_convs.*": "Muon", "bbox_head.reg_convs.*": "Muon",
              "bbox_head.conv_cls.weight": "AdamW", "bbox_head.conv_reg.weight": "AdamW",
              "bbox_head.conv_centerness.weight": "AdamW"},
             "8464b43fcc93f9771898aceb20a808948cce98fb8e13528906844d89da4c5c53"),
    ZooModel("yolov3", YOLOV3, "mmdet 3.3.0 configs/yolo/yolov3_d53_8xb8-ms-608-273e_coco.py",
             {"backbone.conv1.conv.weight": "AdamW",  # the stem
              "backbone.conv_res_block*": "Muon", "neck.*": "Muon",
              "bbox_head.convs_bridge.*": "Muon", "bbox_head.convs_pred.*.weight": "AdamW"},
             "fbca6311b781b2240fc176241e1ddc7ff7e0ede484398c59849e96a704aaa135"),
    ZooModel("centernet", CenterNet,
             "mmdet 3.3.0 configs/centernet/centernet_r18_8xb16-crop512-140e_coco.py",
             {"backbone.conv1.weight": "AdamW", "backbone.layer*": "Muon",
              "neck.deconv_layers.*": "Muon",
              "bbox_head.*_head.0.weight": "Muon", "bbox_head.*_head.2.weight": "AdamW"},
             "5fff746e59e09c59e960fefba386022b2e07a464d7a868a1ebbceaffd22a96e1"),
    ZooModel("rtmdet_tiny", RTMDet, "mmdet 3.3.0 configs/rtmdet/rtmdet_tiny_8xb32-300e_coco.py",
             {"backbone.stem.0.conv.weight": "AdamW",  # the stem
              "*.depthwise_conv.conv.weight": "AdamW",
              # the channel-attention gate is a hidden 1x1 conv, whatever its name
              "backbone.stage*.attention.fc.weight": "Muon",
              "backbone.*": "Muon", "neck.*": "Muon",
              "bbox_head.cls_convs.0.*": "Muon", "bbox_head.reg_convs.0.*": "Muon",
              "bbox_head.rtm_cls.*.weight": "AdamW", "bbox_head.rtm_reg.*.weight": "AdamW"},
             "05989dafcf36432ba1734bb9b3401f486f1cd9b61b9ab899625fb6b476a0d1bc"),
]
