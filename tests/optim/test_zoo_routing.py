"""Muon routing on faithful trees of real detectors and classifiers (tests/helpers/zoo/).

Every trainable tensor with >= 2 dims of every model has an expected side; the structural
rule for output layers must get them all, and the warnings must name exactly the tensors the
zoo entry lists.
"""
import fnmatch
import functools

import pytest
import torch

from visdet_mmext.optim.routing import route_parameters
from zoo import ZOO
from zoo.registry import fingerprint


@functools.lru_cache(maxsize=None)
def built(name):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return ZOO[name].build()


@functools.lru_cache(maxsize=None)
def routed(name):
    return route_parameters(built(name))


@pytest.mark.parametrize("name", ZOO)
def test_tree_matches_upstream(name):
    assert fingerprint(built(name)) == ZOO[name].fingerprint, (
        f"{name} no longer matches {ZOO[name].upstream}")


@pytest.mark.parametrize("name", ZOO)
def test_routing_matches_expected_table(name):
    expected = ZOO[name].expected
    used, wrong, uncovered = set(), [], []
    for route in routed(name).routes:
        if len(route.shape) < 2:
            continue
        pattern = next((p for p in expected if fnmatch.fnmatchcase(route.name, p)), None)
        if pattern is None:
            uncovered.append(route.name)
            continue
        used.add(pattern)
        if expected[pattern] != route.side:
            wrong.append(f"{route.name}: {route.side} ({route.reason}), expected "
                         f"{expected[pattern]} by {pattern!r}")
    assert not uncovered, f"no expectation for {uncovered}"
    assert not wrong, "\n".join(wrong)
    assert used == set(expected), f"patterns matching nothing: {set(expected) - used}"


@pytest.mark.parametrize("name", ZOO)
def test_doubts_name_the_listed_tensors(name):
    warnings = routed(name).warnings + routed(name).doubts
    for pattern in ZOO[name].warnings:
        assert sum(f"exclude=[{pattern!r}]" in w for w in warnings) == 1, (pattern, warnings)
    assert len(warnings) == len(ZOO[name].warnings), warnings


def test_frozen_parameters_are_not_routed():
    names = routed("dino").by_name()
    assert "backbone.conv1.weight" not in names and "backbone.layer1.0.conv1.weight" not in names
    assert "backbone.layer2.0.conv1.weight" in names


def test_per_layer_predictors_of_detr_family_heads():
    for name in ("dino", "deformable_detr"):
        by_name = routed(name).by_name()
        layers = 7 if name == "dino" else 1  # Deformable-DETR shares one pair
        for i in range(layers):
            for predictor in (f"bbox_head.cls_branches.{i}.weight",
                              f"bbox_head.reg_branches.{i}.4.weight"):
                route = by_name[predictor]
                assert not route.use_muon, (name, predictor)
                assert "last layer of its branch" in route.reason
            assert by_name[f"bbox_head.reg_branches.{i}.2.weight"].use_muon
            assert "followed by" in by_name[f"bbox_head.reg_branches.{i}.2.weight"].reason


def test_both_distilled_classifiers_train_alike():
    for name, pair in (("timm_deit_tiny_distilled", ("head.weight", "head_dist.weight")),
                       ("mmpretrain_deit_tiny_distilled",
                        ("head.layers.head.weight", "head.layers.head_dist.weight"))):
        by_name = routed(name).by_name()
        assert [by_name[p].side for p in pair] == ["AdamW", "AdamW"], name


def test_gates_inside_backbones_are_hidden_whatever_their_name():
    rtmdet = routed("rtmdet_tiny").by_name()["backbone.stage1.1.attention.fc.weight"]
    assert rtmdet.use_muon and rtmdet.reason.startswith("hidden conv kernel")
    se = routed("timm_efficientnet_b0").by_name()
    assert se["blocks.1.0.se.conv_reduce.weight"].use_muon
    assert se["blocks.1.0.se.conv_expand.weight"].use_muon
