"""Faster R-CNN and Mask R-CNN as mmdet 3.3.0 builds them from the COCO configs.

Upstream: mmdet/models/detectors/two_stage.py, mmdet/models/dense_heads/rpn_head.py,
mmdet/models/roi_heads/standard_roi_head.py,
mmdet/models/roi_heads/bbox_heads/{bbox_head,convfc_bbox_head}.py,
mmdet/models/roi_heads/mask_heads/fcn_mask_head.py.
"""
from torch import nn

from .openmmlab import FPN, ConvModule, ResNet
from .registry import ZooModel


class RPNHead(nn.Module):
    def __init__(self, num_anchors=3):
        super().__init__()
        self.rpn_conv = nn.Conv2d(256, 256, 3, padding=1)
        self.rpn_cls = nn.Conv2d(256, num_anchors, 1)  # sigmoid: one score per anchor
        self.rpn_reg = nn.Conv2d(256, num_anchors * 4, 1)


class SingleRoIExtractor(nn.Module):
    """RoIAlign layers: no parameters."""


class Shared2FCBBoxHead(nn.Module):
    """BBoxHead registers ``fc_cls``/``fc_reg`` first; ConvFCBBoxHead then adds its branches
    and rebuilds the two predictors in place, so they stay first in registration order."""

    def __init__(self, num_classes=80, roi_feat_area=49):
        super().__init__()
        self.fc_cls = nn.Linear(1024, num_classes + 1)
        self.fc_reg = nn.Linear(1024, 4 * num_classes)
        self.shared_convs = nn.ModuleList()
        self.shared_fcs = nn.ModuleList([nn.Linear(256 * roi_feat_area, 1024),
                                         nn.Linear(1024, 1024)])
        for branch in ("cls_convs", "cls_fcs", "reg_convs", "reg_fcs"):
            setattr(self, branch, nn.ModuleList())
        self.relu = nn.ReLU(inplace=True)


class FCNMaskHead(nn.Module):
    def __init__(self, num_classes=80):
        super().__init__()
        self.convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1, norm=None)
                                   for _ in range(4))
        self.upsample = nn.ConvTranspose2d(256, 256, 2, stride=2)
        self.conv_logits = nn.Conv2d(256, num_classes, 1)
        self.relu = nn.ReLU(inplace=True)


class StandardRoIHead(nn.Module):
    def __init__(self, with_mask):
        super().__init__()
        self.bbox_roi_extractor = SingleRoIExtractor()
        self.bbox_head = Shared2FCBBoxHead()
        if with_mask:
            self.mask_roi_extractor = SingleRoIExtractor()
            self.mask_head = FCNMaskHead()


class FasterRCNN(nn.Module):
    """configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py."""
    with_mask = False

    def __init__(self):
        super().__init__()
        self.backbone = ResNet(50, frozen_stages=1)
        self.neck = FPN([256, 512, 1024, 2048], 256, num_outs=5)
        self.rpn_head = RPNHead()
        self.roi_head = StandardRoIHead(self.with_mask)


class MaskRCNN(FasterRCNN):
    """configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py."""
    with_mask = True


_SHARED = {
    "backbone.layer*.weight": "Muon", "neck.*": "Muon",
    "rpn_head.rpn_conv.weight": "Muon",
    "rpn_head.rpn_cls.weight": "AdamW", "rpn_head.rpn_reg.weight": "AdamW",
    "roi_head.bbox_head.shared_fcs.*": "Muon",
    "roi_head.bbox_head.fc_cls.weight": "AdamW", "roi_head.bbox_head.fc_reg.weight": "AdamW",
}

MODELS = [
    ZooModel("faster_rcnn", FasterRCNN,
             "mmdet 3.3.0 configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", _SHARED,
             "43b167e18ca0ec63c52bfa57faa80136b35fb6059cf9d35a963db13ecd1554f8"),
    ZooModel("mask_rcnn", MaskRCNN, "mmdet 3.3.0 configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
             {**_SHARED,
              "roi_head.mask_head.convs.*": "Muon",
              "roi_head.mask_head.upsample.weight": "Muon",
              "roi_head.mask_head.conv_logits.weight": "AdamW"},
             "5f7fa6ba104f25fbcda4e7a51e5ea511dabcdd9a00151237cdb55cfdf774dc61"),
]
