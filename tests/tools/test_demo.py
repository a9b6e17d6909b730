"""The embedded demo: dataset drawn from a seed, the two models, the metric, a short training."""
import numpy as np
import pytest
import torch

import visdet_mmext.demo  # noqa: F401  (registers the demo)
from demo_utils import tiny_cfg
from visdet_mmext.demo import SHAPES, DemoConvNet, DemoShapes, DemoTransformer, draw_shapes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_same_seed_same_images_and_balanced_labels():
    a_images, a_labels = draw_shapes(200, seed=3)
    b_images, b_labels = draw_shapes(200, seed=3)
    c_images, _ = draw_shapes(200, seed=4)
    assert a_images.shape == (200, 3, 32, 32) and a_images.dtype == np.uint8
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    assert not np.array_equal(a_images, c_images)
    assert np.bincount(a_labels).tolist() == [50, 50, 50, 50]


def test_every_shape_can_be_drawn_and_differs_from_background():
    images, labels = draw_shapes(60, SHAPES, seed=0, noise=0.0)
    assert sorted(set(labels.tolist())) == list(range(len(SHAPES)))
    # without noise each image has exactly two colours: background and shape
    for image in images[:12]:
        colours = np.unique(image.reshape(3, -1).T, axis=0)
        assert len(colours) == 2


def test_splits_are_disjoint_parts_of_one_draw():
    train = DemoShapes("train", num_train=100, num_val=40, seed=1)
    val = DemoShapes("val", num_train=100, num_val=40, seed=1)
    assert (len(train), len(val)) == (100, 40)
    images, labels = draw_shapes(140, seed=1)
    assert np.array_equal(train.images, images[:100]) and np.array_equal(val.images, images[100:])
    item = train[0]
    assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.float32
    assert item["data_samples"] == int(labels[0])
    assert train.metainfo["classes"] == ("circle", "square", "triangle", "cross")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split"):
        DemoShapes("test")
    with pytest.raises(ValueError, match="hexagon"):
        DemoShapes(classes=("circle", "hexagon"))


def test_registered_by_name():
    from mmengine.registry import DATASETS, METRICS, MODELS
    assert isinstance(MODELS.build(dict(type="DemoConvNet", widths=(8, 16))), DemoConvNet)
    assert isinstance(MODELS.build(dict(type="DemoTransformer", embed_dim=16, depth=1,
                                        num_heads=2)), DemoTransformer)
    assert len(DATASETS.build(dict(type="DemoShapes", split="val", num_train=8, num_val=4))) == 4
    metric = METRICS.build(dict(type="DemoAccuracy"))
    metric.process(None, [dict(pred_label=1, gt_label=1), dict(pred_label=0, gt_label=2)])
    assert metric.compute_metrics(metric.results) == dict(accuracy=50.0)


def test_convnet_has_the_parts_routing_tells_apart():
    model = DemoConvNet(widths=(8, 16, 32))
    names = dict(model.named_parameters())
    assert names["stem.conv.weight"].shape == (8, 3, 3, 3)
    assert names["layers.0.dwconv.conv.weight"].shape == (16, 1, 3, 3)  # depthwise
    assert model.layers[0].dwconv.conv.groups == 16
    assert names["layers.1.pwconv.conv.weight"].shape == (32, 32, 1, 1)
    assert names["head.weight"].shape == (4, 32)
    assert any(".bn." in name for name in names)


def test_transformer_has_the_parts_routing_tells_apart():
    model = DemoTransformer(embed_dim=16, depth=2, num_heads=2)
    names = dict(model.named_parameters())
    for name in ("patch_embed.weight", "cls_token", "pos_embed", "blocks.1.attn.qkv.weight",
                 "blocks.0.mlp.fc2.weight", "blocks.0.norm1.weight", "norm.weight", "head.weight"):
        assert name in names
    assert names["pos_embed"].shape == (1, 65, 16)


@pytest.mark.parametrize("model", [DemoConvNet(widths=(8, 16)),
                                   DemoTransformer(embed_dim=16, depth=1, num_heads=2)])
def test_forward_modes(model):
    inputs, labels = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0])
    assert model(inputs).shape == (5, 4)
    loss = model(inputs, labels, mode="loss")["loss"]
    assert loss.ndim == 0 and loss.requires_grad
    predictions = model(inputs, labels, mode="predict")
    assert len(predictions) == 5 and predictions[1]["gt_label"] == 1
    with pytest.raises(ValueError, match="labels"):
        model(inputs, mode="loss")


def test_demo_config_learns(tmp_path):
    """The demo config's pipeline learns: it fits a small training set within a few epochs."""
    from mmengine.runner import Runner

    cfg = tiny_cfg("optimizers/adamw.py", tmp_path, iters=60, num_train=128, num_val=64,
                   batch_size=32)
    cfg.model.widths = (16, 32, 64)
    cfg.param_scheduler = None
    cfg.optim_wrapper.optimizer.lr = 3e-3
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    print("demo losses", losses[:3], losses[-3:])
    assert losses[-5:].mean() < 0.5 * losses[:5].mean(), losses
