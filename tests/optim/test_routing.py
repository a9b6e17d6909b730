"""Muon routing: which parameters Muon updates, for the model shapes users train."""
import pytest
from torch import nn

from routing_models import DetectorLike, MobileNetBlock, ResNetLike, TinyGPT
from visdet_mmext.errors import RoutingError
from visdet_mmext.optim.routing import MuonRules, route_parameters


def _sides(model, **kwargs):
    return {r.name: r.side for r in route_parameters(model, **kwargs).routes}


def test_resnet_classifier():
    sides = _sides(ResNetLike())
    assert sides["conv1.weight"] == "AdamW"  # stem
    assert sides["fc.weight"] == sides["fc.bias"] == "AdamW"  # classifier
    assert sides["bn1.weight"] == sides["layer2.0.bias"] == "AdamW"  # norms, biases
    assert sides["layer1.0.weight"] == sides["layer1.3.weight"] == sides["layer2.0.weight"] == "Muon"
    assert {n for n, s in sides.items() if s == "Muon"} == {"layer1.0.weight", "layer1.3.weight",
                                                            "layer2.0.weight"}


def test_detector():
    sides = _sides(DetectorLike())
    assert sides["backbone.stem.0.weight"] == "AdamW"
    assert sides["backbone.stage1.0.weight"] == sides["backbone.stage2.0.weight"] == "Muon"
    assert sides["neck.lateral_convs.1.weight"] == sides["neck.fpn_convs.0.weight"] == "Muon"
    assert sides["bbox_head.cls_convs.0.weight"] == sides["bbox_head.reg_convs.0.weight"] == "Muon"
    for predictor in ("bbox_head.retina_cls", "bbox_head.retina_reg", "roi_head.bbox_head.fc_cls",
                      "roi_head.bbox_head.fc_reg"):
        assert sides[f"{predictor}.weight"] == "AdamW", predictor
    assert sides["roi_head.bbox_head.shared_fcs.0.weight"] == "Muon"


def test_small_transformer():
    routing = route_parameters(TinyGPT())
    sides = {r.name: r.side for r in routing.routes}
    reasons = {r.name: r.reason for r in routing.routes}
    assert reasons["token_embedding.weight"] == "embedding"
    assert sides["pos_embed"] == sides["lm_head.weight"] == "AdamW"
    for block in (0, 1):
        for name in ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.0.weight", "mlp.2.weight"):
            assert sides[f"blocks.{block}.{name}"] == "Muon", name
    assert sides["blocks.0.norm1.weight"] == "AdamW"


def test_mobilenet_depthwise():
    routing = route_parameters(MobileNetBlock())
    reasons = {r.name: r.reason for r in routing.routes}
    assert reasons["depthwise.weight"] == "depthwise conv"
    assert reasons["expand.weight"].startswith("hidden conv kernel, flattened to 32x8")
    assert reasons["stem.weight"] == "first layer: reads the input"


def test_routing_is_deterministic_and_printable():
    first, second = route_parameters(DetectorLike()), route_parameters(DetectorLike())
    assert first.table() == second.table()
    assert "Muon: 10 tensors, 18,816 parameters" in first.summary()
    assert "bbox_head.retina_cls.weight" in first.table()


def test_user_rules_take_precedence_over_defaults():
    rules = MuonRules(include=("bbox_head.retina_cls.weight",), exclude=("neck.*",))
    routing = route_parameters(DetectorLike(), rules, flags={"backbone.stem.0.weight": True})
    by_name = routing.by_name()
    assert by_name["bbox_head.retina_cls.weight"].use_muon
    assert by_name["bbox_head.retina_cls.weight"].reason == "include 'bbox_head.retina_cls.weight'"
    assert not by_name["neck.fpn_convs.0.weight"].use_muon
    assert by_name["backbone.stem.0.weight"].reason == "custom_keys use_muon=True"
    assert not by_name["neck.fpn_convs.0.bias"].use_muon  # excluded, and 1-D anyway


def test_contradictory_rules_raise():
    rules = MuonRules(include=("neck.*.weight",), exclude=("neck.fpn_convs.*",))
    with pytest.raises(RoutingError, match="neck.fpn_convs.0.weight: include 'neck.\\*.weight' vs "
                                           "exclude 'neck.fpn_convs.\\*'"):
        route_parameters(DetectorLike(), rules)
    with pytest.raises(RoutingError, match="custom_keys use_muon=False vs include"):
        route_parameters(DetectorLike(), MuonRules(include=("neck.*.weight",)),
                         flags={"neck.fpn_convs.0.weight": False})


def test_muon_rules_select_matrices_only():
    by_name = route_parameters(DetectorLike(), MuonRules(include=("neck.*", "backbone.stem.*"))).by_name()
    assert by_name["backbone.stem.0.weight"].use_muon
    assert not by_name["neck.fpn_convs.0.bias"].use_muon
    assert by_name["neck.fpn_convs.0.bias"].reason == ("fewer than 2 dims (include 'neck.*' applies "
                                                       "to matrices only)")


def test_unmatched_pattern_warns_with_closest_names():
    routing = route_parameters(DetectorLike(), MuonRules(exclude=("neck.fpn_conv.*",)))
    assert any("'neck.fpn_conv.*' matches no parameter" in w and "neck.fpn_convs" in w
               for w in routing.warnings)


def test_model_without_matrices_warns():
    routing = route_parameters(nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2)))
    assert any("no parameter is routed to Muon" in w for w in routing.warnings)


def test_stem_rule_can_be_set_or_disabled():
    custom = route_parameters(ResNetLike(), MuonRules(stem="layer1.0")).by_name()
    assert not custom["layer1.0.weight"].use_muon and custom["conv1.weight"].use_muon
    off = route_parameters(ResNetLike(), MuonRules(stem="none")).by_name()
    assert off["conv1.weight"].use_muon


def test_unknown_rule_keys_are_refused():
    with pytest.raises(ValueError, match="unknown keys \\['excludes'\\]"):
        MuonRules.from_cfg(dict(excludes=["x"]))
