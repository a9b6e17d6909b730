"""Hugging Face transformers models built small from their configs (no download), each with a
batch its own loss trains on, for Muon routing read from the loss graph.

``HF_MODELS[name]`` is ``(build, batch)``: ``build()`` returns the model (seeded),
``batch(seed)`` the keyword arguments of its forward, labels included. ``loss(model, batch)``
returns the model's own loss (LeViT with its distillation head has none: its two heads are
trained with cross-entropy on the labels, as DeiT's hard distillation does with the teacher's).
"""
from __future__ import annotations

import torch
import transformers as hf

IMAGE = 32


def _detection_labels(generator, classes: int = 3, boxes: int = 2):
    labels = []
    for _ in range(2):
        centre = torch.rand(boxes, 2, generator=generator) * 0.5 + 0.25
        size = torch.rand(boxes, 2, generator=generator) * 0.2 + 0.1
        labels.append({"class_labels": torch.randint(0, classes, (boxes,), generator=generator),
                       "boxes": torch.cat([centre, size], 1)})
    return labels


def _images(generator, size: int = IMAGE):
    return torch.randn(2, 3, size, size, generator=generator)


def _detection_batch(seed: int, size: int = IMAGE):
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": _images(generator, size), "labels": _detection_labels(generator)}


def _classification_batch(seed: int, size: int = IMAGE, classes: int = 5):
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": _images(generator, size),
            "labels": torch.randint(0, classes, (2,), generator=generator)}


def _segmentation_batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    masks = [(torch.rand(2, IMAGE * 2, IMAGE * 2, generator=generator) > 0.5).float()
             for _ in range(2)]
    return {"pixel_values": _images(generator, IMAGE * 2), "mask_labels": masks,
            "class_labels": [torch.randint(0, 3, (2,), generator=generator) for _ in range(2)]}


def _resnet(**kwargs):
    return hf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                           layer_type="basic", **kwargs)


DETR_SIZES = dict(d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=5,
                  num_labels=3)


def detr():
    return hf.DetrForObjectDetection(hf.DetrConfig(
        backbone_config=_resnet(out_features=["stage4"]), use_pretrained_backbone=False,
        auxiliary_loss=True, **DETR_SIZES))


def conditional_detr():
    return hf.ConditionalDetrForObjectDetection(hf.ConditionalDetrConfig(
        backbone_config=_resnet(out_features=["stage4"]), auxiliary_loss=True, **DETR_SIZES))


def rt_detr():
    backbone = hf.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16],
                                     depths=[1, 1, 1, 1], layer_type="basic",
                                     out_features=["stage2", "stage3", "stage4"])
    return hf.RTDetrForObjectDetection(hf.RTDetrConfig(
        backbone_config=backbone, encoder_in_channels=[16, 16, 16], encoder_hidden_dim=16,
        encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16, decoder_in_channels=[16, 16, 16],
        decoder_ffn_dim=32, decoder_layers=2, decoder_attention_heads=2, decoder_n_points=2,
        num_queries=6, num_denoising=4, num_labels=3, anchor_image_size=None,
        auxiliary_loss=True))


def yolos():
    return hf.YolosForObjectDetection(hf.YolosConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        image_size=[IMAGE, IMAGE], patch_size=8, num_detection_tokens=4, num_labels=3,
        auxiliary_loss=False))


def mask2former():
    backbone = hf.SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                             window_size=2, image_size=IMAGE * 2,
                             out_features=["stage1", "stage2", "stage3", "stage4"])
    return hf.Mask2FormerForUniversalSegmentation(hf.Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=3, num_attention_heads=2,
        dim_feedforward=32, num_queries=4, num_labels=3, train_num_points=16,
        use_auxiliary_loss=True))


def dinov2():
    return hf.Dinov2ForImageClassification(hf.Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=IMAGE,
        patch_size=8, num_labels=5))


def swin():
    return hf.SwinForImageClassification(hf.SwinConfig(
        embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2, image_size=IMAGE,
        patch_size=4, num_labels=5))


def convnext_v2():
    return hf.ConvNextV2ForImageClassification(hf.ConvNextV2Config(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=5))


def levit():
    return hf.LevitForImageClassificationWithTeacher(hf.LevitConfig(
        image_size=IMAGE, hidden_sizes=[16, 24], num_attention_heads=[2, 2], depths=[1, 1],
        key_dim=[4, 4], attention_ratio=[2, 2], mlp_ratio=[2, 2],
        down_ops=[["Subsample", 4, 2, 2, 2, 2]], num_labels=5))


def efficientnet():
    return hf.EfficientNetForImageClassification(hf.EfficientNetConfig(
        width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, image_size=IMAGE,
        num_labels=5))


def loss(model, batch) -> torch.Tensor:
    """The model's own loss (``model`` may be wrapped, as in DistributedDataParallel)."""
    if isinstance(getattr(model, "module", model), hf.LevitForImageClassificationWithTeacher):
        out = model(pixel_values=batch["pixel_values"])
        cross_entropy = torch.nn.functional.cross_entropy
        return (cross_entropy(out.cls_logits, batch["labels"])
                + cross_entropy(out.distillation_logits, batch["labels"])) / 2
    return model(**batch).loss


HF_MODELS = {
    "detr": (detr, _detection_batch),
    "conditional_detr": (conditional_detr, _detection_batch),
    "rt_detr": (rt_detr, _detection_batch),
    "yolos": (yolos, _detection_batch),
    "mask2former": (mask2former, _segmentation_batch),
    "dinov2": (dinov2, _classification_batch),
    "swin": (swin, _classification_batch),
    "convnext_v2": (convnext_v2, _classification_batch),
    "levit": (levit, _classification_batch),
    "efficientnet": (efficientnet, _classification_batch),
}


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = HF_MODELS[name][0]()
    model.train()
    return model


#: Per model: the tensors with >= 2 dims that belong on AdamW, read from each model's source (the
#: stem and its parallel branches, tables, final predictors, depthwise convs, 1 x C scales);
#: every other trainable tensor with >= 2 dims belongs on Muon.
ADAMW = {
    "detr": ("model.query_position_embeddings.weight", "class_labels_classifier.weight",
             "bbox_predictor.layers.2.weight"),
    "conditional_detr": ("model.query_position_embeddings.weight", "class_labels_classifier.weight",
                         "bbox_predictor.layers.2.weight",
                         # reference points: the box regression adds them, so the loss reads them
                         "model.decoder.ref_point_head.layers.1.weight"),
    "rt_detr": ("model.backbone.model.embedder.embedder.0.convolution.weight",
                "model.denoising_class_embed.weight", "model.enc_score_head.weight",
                "model.enc_bbox_head.layers.2.weight", "model.decoder.class_embed.*.weight",
                "model.decoder.bbox_embed.*.layers.2.weight"),
    "yolos": ("vit.embeddings.cls_token", "vit.embeddings.detection_tokens",
              "vit.embeddings.position_embeddings", "vit.embeddings.patch_embeddings.projection.weight",
              "vit.encoder.interpolation.mid_position_embeddings",
              "class_labels_classifier.layers.2.weight", "bbox_predictor.layers.2.weight"),
    "mask2former": ("*.patch_embeddings.projection.weight", "*.relative_position_bias_table",
                    "model.pixel_level_module.decoder.level_embed",
                    # the mask features: the loss reads their product with the mask embeddings
                    "model.pixel_level_module.decoder.mask_projection.weight",
                    "model.transformer_module.queries_embedder.weight",
                    "model.transformer_module.queries_features.weight",
                    "model.transformer_module.level_embed.weight",
                    "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight",
                    "class_predictor.weight"),
    "dinov2": ("dinov2.embeddings.cls_token", "dinov2.embeddings.mask_token",
               "dinov2.embeddings.position_embeddings",
               "dinov2.embeddings.patch_embeddings.projection.weight", "classifier.weight"),
    "swin": ("swin.embeddings.patch_embeddings.projection.weight", "*.relative_position_bias_table",
             "classifier.weight"),
    "convnext_v2": ("convnextv2.embeddings.patch_embeddings.weight", "*.dwconv.weight",
                    "*.grn.weight", "*.grn.bias", "classifier.weight"),
    "levit": ("levit.patch_embeddings.embedding_layer_1.convolution.weight", "*.attention_biases",
              "classifier.linear.weight", "classifier_distill.linear.weight"),
    "efficientnet": ("efficientnet.embeddings.convolution.weight",
                     "*.depthwise_conv.depthwise_conv.weight", "classifier.weight"),
}
#: Tensors the structural rule alone (before the first step) places on the wrong side: layers
#: read their widths, so widths call these predictors hidden (RT-DETR's boxes are 4 wide, as is
#: the input of its query-position MLP; Mask2Former's mask features and embeddings are as wide
#: as its hidden layers).
STRUCTURE_MISSES = {
    "rt_detr": ("model.enc_bbox_head.layers.2.weight", "model.decoder.bbox_embed.*.layers.2.weight"),
    "mask2former": ("model.pixel_level_module.decoder.mask_projection.weight",
                    "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight"),
}


def expected_side(model: str, name: str) -> str:
    import fnmatch
    return "AdamW" if any(fnmatch.fnmatchcase(name, p) for p in ADAMW[model]) else "Muon"
