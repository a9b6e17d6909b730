"""DETR, Deformable-DETR and DINO as mmdet 3.3.0 builds them from the COCO configs.

Upstream: mmdet/models/detectors/{base_detr,detr,deformable_detr,dino}.py,
mmdet/models/dense_heads/{detr_head,deformable_detr_head,dino_head}.py,
mmdet/models/layers/transformer/{detr_layers,deformable_detr_layers,dino_layers,utils}.py.
"""
import copy

import torch
from torch import nn

from .openmmlab import (FFN, ChannelMapper, Linear, ModuleList, MultiheadAttention,
                        MultiScaleDeformableAttention, ResNet)
from .registry import ZooModel


class SinePositionalEncoding(nn.Module):
    """No parameters."""


class DetrTransformerEncoderLayer(nn.Module):
    def __init__(self, feedforward_channels):
        super().__init__()
        self.self_attn = MultiheadAttention()
        self.ffn = FFN(256, feedforward_channels)
        self.norms = ModuleList(nn.LayerNorm(256) for _ in range(2))


class DetrTransformerDecoderLayer(nn.Module):
    def __init__(self, feedforward_channels):
        super().__init__()
        self.self_attn = MultiheadAttention()
        self.cross_attn = MultiheadAttention()
        self.ffn = FFN(256, feedforward_channels)
        self.norms = ModuleList(nn.LayerNorm(256) for _ in range(3))


class DeformableDetrTransformerEncoderLayer(nn.Module):
    def __init__(self, feedforward_channels):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention()
        self.ffn = FFN(256, feedforward_channels)
        self.norms = ModuleList(nn.LayerNorm(256) for _ in range(2))


class DeformableDetrTransformerDecoderLayer(nn.Module):
    def __init__(self, feedforward_channels):
        super().__init__()
        self.self_attn = MultiheadAttention()
        self.cross_attn = MultiScaleDeformableAttention()
        self.ffn = FFN(256, feedforward_channels)
        self.norms = ModuleList(nn.LayerNorm(256) for _ in range(3))


class DetrTransformerEncoder(nn.Module):
    layer = DetrTransformerEncoderLayer

    def __init__(self, feedforward_channels, num_layers=6):
        super().__init__()
        self.layers = ModuleList(self.layer(feedforward_channels) for _ in range(num_layers))


class DetrTransformerDecoder(DetrTransformerEncoder):
    layer = DetrTransformerDecoderLayer

    def __init__(self, feedforward_channels, num_layers=6):
        super().__init__(feedforward_channels, num_layers)
        self.post_norm = nn.LayerNorm(256)


class DeformableDetrTransformerEncoder(DetrTransformerEncoder):
    layer = DeformableDetrTransformerEncoderLayer


class DeformableDetrTransformerDecoder(DetrTransformerEncoder):
    layer = DeformableDetrTransformerDecoderLayer


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = ModuleList(Linear(n, k) for n, k in zip([input_dim] + hidden,
                                                               hidden + [output_dim]))


class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    def __init__(self, feedforward_channels, num_layers=6):
        super().__init__(feedforward_channels, num_layers)
        self.ref_point_head = MLP(512, 256, 256, 2)
        self.norm = nn.LayerNorm(256)


class DETRHead(nn.Module):
    def __init__(self, num_classes=80, cls_out_channels=81):
        super().__init__()
        self.fc_cls = Linear(256, cls_out_channels)
        self.activate = nn.ReLU()
        self.reg_ffn = FFN(256, 256)
        self.fc_reg = Linear(256, 4)


class DeformableDETRHead(nn.Module):
    """``cls_branches``/``reg_branches``: one per decoder layer (+1 for two-stage proposals);
    one shared module repeated when boxes are not refined (``share_pred_layer``)."""

    def __init__(self, num_pred_layer, share_pred_layer, num_classes=80):
        super().__init__()
        fc_cls = Linear(256, num_classes)
        reg_branch = nn.Sequential(Linear(256, 256), nn.ReLU(), Linear(256, 256), nn.ReLU(),
                                   Linear(256, 4))
        copy_or_share = (lambda m: m) if share_pred_layer else copy.deepcopy
        self.cls_branches = nn.ModuleList(copy_or_share(fc_cls) for _ in range(num_pred_layer))
        self.reg_branches = nn.ModuleList(copy_or_share(reg_branch)
                                          for _ in range(num_pred_layer))


class DINOHead(DeformableDETRHead):
    pass


class CdnQueryGenerator(nn.Module):
    def __init__(self, num_classes=80, embed_dims=256):
        super().__init__()
        self.label_embedding = nn.Embedding(num_classes, embed_dims)


def _detector_backbone(self, neck_in):
    """DetectionTransformer.__init__: backbone (ResNet-50, frozen stem and stage 1, frozen
    BN) and ChannelMapper neck, in that order."""
    self.backbone = ResNet(50, frozen_stages=1, norm_grad=False)
    if neck_in == [2048]:
        self.neck = ChannelMapper(neck_in, 256, kernel_size=1, norm=None, act=None)
    else:
        self.neck = ChannelMapper(neck_in, 256, kernel_size=1, norm="GN", act=None, num_outs=4)


class DETR(nn.Module):
    """configs/detr/detr_r50_8xb2-150e_coco.py."""

    def __init__(self):
        super().__init__()
        _detector_backbone(self, [2048])
        self.bbox_head = DETRHead()
        self.positional_encoding = SinePositionalEncoding()
        self.encoder = DetrTransformerEncoder(2048)
        self.decoder = DetrTransformerDecoder(2048)
        self.query_embedding = nn.Embedding(100, 256)


class DeformableDETR(nn.Module):
    """configs/deformable_detr/deformable-detr_r50_16xb2-50e_coco.py: no box refinement,
    one stage, so the head shares one predictor pair across the 6 decoder layers."""

    def __init__(self):
        super().__init__()
        _detector_backbone(self, [512, 1024, 2048])
        self.bbox_head = DeformableDETRHead(num_pred_layer=6, share_pred_layer=True)
        self.positional_encoding = SinePositionalEncoding()
        self.encoder = DeformableDetrTransformerEncoder(1024)
        self.decoder = DeformableDetrTransformerDecoder(1024)
        self.query_embedding = nn.Embedding(300, 512)
        self.level_embed = nn.Parameter(torch.empty(4, 256))
        self.reference_points_fc = nn.Linear(256, 2)


class DINO(nn.Module):
    """configs/dino/dino-4scale_r50_8xb2-12e_coco.py: box refinement and two stages, so the
    head has 7 unshared predictor pairs."""

    def __init__(self):
        super().__init__()
        _detector_backbone(self, [512, 1024, 2048])
        self.bbox_head = DINOHead(num_pred_layer=7, share_pred_layer=False)
        self.positional_encoding = SinePositionalEncoding()
        self.encoder = DeformableDetrTransformerEncoder(2048)
        self.decoder = DinoTransformerDecoder(2048)
        self.query_embedding = nn.Embedding(900, 256)
        self.level_embed = nn.Parameter(torch.empty(4, 256))
        self.memory_trans_fc = nn.Linear(256, 256)
        self.memory_trans_norm = nn.LayerNorm(256)
        self.dn_query_generator = CdnQueryGenerator()


#: The backbone below the frozen stem and stage 1, and the neck: hidden layers.
_BACKBONE_NECK = {"backbone.layer*": "Muon", "neck.*": "Muon"}

MODELS = [
    ZooModel(
        "detr", DETR, "mmdet 3.3.0 configs/detr/detr_r50_8xb2-150e_coco.py",
        {**_BACKBONE_NECK,
         "bbox_head.fc_cls.weight": "AdamW", "bbox_head.fc_reg.weight": "AdamW",
         "bbox_head.reg_ffn.*": "Muon",
         "*coder.layers.*": "Muon",  # attention and FFN matrices
         "query_embedding.weight": "AdamW"},
        "3e9dc3d3e2eab3a31040f769025f73b5e73463660a86dae468062ecd031712cb"),
    ZooModel(
        "deformable_detr", DeformableDETR,
        "mmdet 3.3.0 configs/deformable_detr/deformable-detr_r50_16xb2-50e_coco.py",
        {**_BACKBONE_NECK,
         "bbox_head.cls_branches.0.weight": "AdamW",
         "bbox_head.reg_branches.0.4.weight": "AdamW",
         "bbox_head.reg_branches.0.[02].weight": "Muon",
         "*coder.layers.*": "Muon",
         "query_embedding.weight": "AdamW", "level_embed": "AdamW",
         # a 2-row predictor outside the head: no layer reads its output, and the loss reads
         # the reference points (the box regression adds them)
         "reference_points_fc.weight": "AdamW"},
        "a98c0b4bcc7d2b64f919ab4a629a0033c4ea648f55ff8cf39d5a9e659b29d943"),
    ZooModel(
        "dino", DINO, "mmdet 3.3.0 configs/dino/dino-4scale_r50_8xb2-12e_coco.py",
        {**_BACKBONE_NECK,
         "bbox_head.cls_branches.*.weight": "AdamW",
         "bbox_head.reg_branches.*.4.weight": "AdamW",
         "bbox_head.reg_branches.*.[02].weight": "Muon",
         "*coder.layers.*": "Muon", "decoder.ref_point_head.*": "Muon",
         "memory_trans_fc.weight": "Muon",
         "query_embedding.weight": "AdamW", "level_embed": "AdamW",
         "dn_query_generator.label_embedding.weight": "AdamW"},
        "6631ed9024ff1c9c44b96a497aa900c4c24126e3b3b6a33cb2b673d19c130bec"),
]
