"""optim_wrapper.base: a layer-wise lr decay constructor's groups, then Muon routing on top.

The bases are re-implementations of mmpretrain's and mmdet's layer-decay constructors
(``layer_decay.py`` says why the real ones cannot be imported here). The oracle for each
parameter is the base's own group (built alone) and the routing without a base: a Muon-side
parameter keeps the base's lr and weight decay; an AdamW-side one gets ``adamw_lr`` and
``adamw_weight_decay`` times the base's multipliers.
"""
import pytest
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from layer_decay import ConvNeXtClassifier, TinyViT, image_data
from runner_utils import logged, make_runner
from visdet_mmext.errors import OptimizerConfigError
from visdet_mmext.optim import check_optim_wrapper_cfg, route_parameters

MUON = dict(type="Muon", lr=0.02, weight_decay=0.05, adamw_lr=4e-3, adamw_weight_decay=0.1)
PRETRAIN = dict(layer_decay_rate=0.5, norm_decay_mult=0.0, custom_keys={".pos_embed": dict(decay_mult=0.0)})
DETECTION = dict(num_layers=6, decay_rate=0.7)


def _base_alone(base: str, model, paramwise: dict) -> dict:
    """name -> (lr, weight decay) from the base constructor by itself."""
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=base, optim_wrapper_cfg=dict(optimizer=dict(MUON)), paramwise_cfg=paramwise))
    groups = []
    constructor.add_params(groups, model)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g.get("weight_decay", MUON["weight_decay"]))
            for g in groups for p in g["params"]}


@pytest.mark.parametrize("base, model, paramwise", [
    ("PretrainLayerDecay", TinyViT, PRETRAIN),
    ("DetectionLayerDecay", ConvNeXtClassifier, DETECTION),
])
def test_base_groups_then_routing_with_the_same_multipliers(base, model, paramwise):
    model = model()
    alone = _base_alone(base, model, paramwise)
    assert len({lr for lr, _ in alone.values()}) >= 3  # the decay really spreads the lrs
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(MUON), base=base,
                                              constructor="VisdetOptimWrapperConstructor",
                                              paramwise_cfg=paramwise))
    routes = route_parameters(model).by_name()
    seen = set()
    for group in wrapper.optimizer.param_groups:
        for name in group["param_names"]:
            seen.add(name)
            lr, decay = alone[name]
            assert group["use_muon"] == routes[name].use_muon, name
            if group["use_muon"]:
                assert (group["lr"], group["weight_decay"]) == pytest.approx((lr, decay)), name
            else:
                assert group["lr"] == pytest.approx(4e-3 * lr / 0.02), name
                assert group["weight_decay"] == pytest.approx(0.1 * decay / 0.05), name
    assert seen == set(alone) == {n for n, p in model.named_parameters()}
    assert any(g["use_muon"] for g in wrapper.optimizer.param_groups)


@pytest.mark.slow
def test_layer_decay_muon_trains_through_the_runner(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(MUON), base="PretrainLayerDecay",
                                        constructor="VisdetOptimWrapperConstructor",
                                        paramwise_cfg=PRETRAIN),
                         model=TinyViT(), data=image_data(), max_iters=20, batch_size=32)
    runner.train()
    losses = logged(runner, "train/loss")
    assert losses[-1] < losses[0]
    # the first Muon group: layers.0, depth 1 of 4, so 0.5 ** (4 - 1 - 1) x lr
    assert logged(runner, "train/lr")[0] == pytest.approx(0.02 * 0.5 ** 2)


def test_bad_bases_fail_with_the_fix():
    config = dict(optimizer=dict(MUON), constructor="VisdetOptimWrapperConstructor",
                  paramwise_cfg=PRETRAIN)
    with pytest.raises(OptimizerConfigError, match="Did you mean PretrainLayerDecay"):
        build_optim_wrapper(TinyViT(), dict(config, base="PretrainLayerDecy"))
    with pytest.raises(OptimizerConfigError, match="DefaultOptimWrapperConstructor"):
        build_optim_wrapper(TinyViT(), dict(config, base="VisdetOptimWrapperConstructor"))
    with pytest.raises(OptimizerConfigError, match="constructor='VisdetOptimWrapperConstructor'"):
        check_optim_wrapper_cfg(dict(optimizer=dict(type="AdamW", lr=1e-3),
                                     base="PretrainLayerDecay"))
    check_optim_wrapper_cfg(dict(config, base="PretrainLayerDecay"))  # the base's keys are its own
