"""VisdetOptimWrapperConstructor: Muon per layer, mmengine's paramwise_cfg, schedules, resume."""
import json

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from routing_models import DetectorLike, ResNetLike
from runner_utils import logged, make_runner
from subprocess_utils import run_python
from toy import ToyMLP
from visdet_mmext.errors import OptimizerConfigError

CTOR = "VisdetOptimWrapperConstructor"


def _build(model, optimizer=None, **paramwise):
    optimizer = optimizer or dict(type="Muon", lr=0.02, momentum=0.95, weight_decay=0.01)
    return build_optim_wrapper(model, dict(optimizer=optimizer, constructor=CTOR,
                                           paramwise_cfg=paramwise or None))


def _placement(wrapper):
    return {name: (g["use_muon"], g["lr"], g["weight_decay"])
            for g in wrapper.optimizer.param_groups for name in g["param_names"]}


def test_one_hybrid_optimizer_with_merged_groups():
    wrapper = _build(ResNetLike())
    groups = wrapper.optimizer.param_groups
    assert type(wrapper.optimizer).__name__ == "Muon"
    assert len(groups) == 2  # one Muon group and one AdamW group, not one per parameter
    place = _placement(wrapper)
    assert place["layer1.0.weight"] == (True, 0.02, 0.01)
    assert place["fc.weight"] == (False, pytest.approx(3e-4), 0.01)  # 0.015 * lr by default
    assert wrapper.optimizer.defaults["lr"] == 0.02


def test_adamw_side_settings_and_multipliers():
    wrapper = _build(DetectorLike(), dict(type="Muon", lr=0.02, weight_decay=0.01, adamw_lr=1e-3,
                                          adamw_betas=(0.8, 0.9), adamw_weight_decay=0.05),
                     custom_keys={"backbone": dict(lr_mult=0.1)}, bias_decay_mult=0.0)
    place = _placement(wrapper)
    assert place["backbone.stage1.0.weight"] == (True, pytest.approx(0.002), 0.01)  # Muon x 0.1
    assert place["backbone.stem.0.weight"] == (False, pytest.approx(1e-4), 0.05)  # AdamW x 0.1
    assert place["neck.fpn_convs.0.weight"] == (True, 0.02, 0.01)
    assert place["neck.fpn_convs.0.bias"] == (False, 1e-3, 0.0)  # bias_decay_mult on the AdamW side
    adamw = next(g for g in wrapper.optimizer.param_groups if not g["use_muon"])
    assert adamw["betas"] == (0.8, 0.9)
    assert len(wrapper.optimizer.param_groups) == 5


def test_decay_multipliers_land_in_the_right_groups():
    wrapper = _build(ResNetLike(), norm_decay_mult=0.0, flat_decay_mult=0.5)
    place = _placement(wrapper)
    assert place["bn1.weight"][2] == 0.0  # norm rule first (mmengine's order)
    assert place["layer2.0.bias"][2] == pytest.approx(0.005)  # flat rule
    assert place["conv1.weight"][2] == 0.01 and place["layer1.0.weight"][2] == 0.01


def test_routing_rules_from_paramwise_cfg():
    wrapper = _build(DetectorLike(), muon=dict(exclude=["neck.*"]),
                     custom_keys={"bbox_head.retina_cls": dict(use_muon=True)})
    place = _placement(wrapper)
    assert place["neck.fpn_convs.0.weight"][0] is False
    assert place["bbox_head.retina_cls.weight"][0] is True


def test_muon_settings_on_another_optimizer_are_refused():
    with pytest.raises(OptimizerConfigError, match="only apply to optimizer type 'Muon'"):
        _build(ResNetLike(), dict(type="AdamW", lr=1e-3), muon=dict(exclude=["fc*"]))
    with pytest.raises(OptimizerConfigError, match="custom_keys\\['fc'\\].use_muon"):
        _build(ResNetLike(), dict(type="AdamW", lr=1e-3), custom_keys={"fc": dict(use_muon=False)})


def test_other_optimizers_keep_mmengine_grouping():
    wrapper = _build(ResNetLike(), dict(type="AdamW", lr=1e-3, weight_decay=0.05), norm_decay_mult=0.)
    assert len(wrapper.optimizer.param_groups) == len(list(ResNetLike().parameters()))


def test_contradictory_rules_fail_at_build():
    with pytest.raises(OptimizerConfigError, match="contradictory"):
        _build(DetectorLike(), muon=dict(include=["neck.*"], exclude=["neck.fpn_convs.0.weight"]))


def test_resuming_with_a_different_routing_names_the_moved_parameters():
    model = ResNetLike()
    wrapper = _build(model)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    wrapper.step()
    state = wrapper.state_dict()
    moved = _build(model, muon=dict(exclude=["layer2.*"]))
    with pytest.raises(ValueError, match="layer2.0.weight: checkpoint group 1 \\(Muon\\) -> now "
                                         "group 0 \\(AdamW\\)"):
        moved.load_state_dict(state)
    _build(model).load_state_dict(state)  # the same routing loads


def test_schedules_scale_both_sides_proportionally(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01),
                                        constructor=CTOR), model=ToyMLP(), max_iters=20,
                         param_scheduler=[
                             dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=5),
                             dict(type="CosineAnnealingLR", eta_min_ratio=0.01, by_epoch=False,
                                  begin=5, end=20)])
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    factors = {round(g["lr"] / g["initial_lr"], 12) for g in groups}
    assert len(factors) == 1 and 0 < factors.pop() < 0.1  # same schedule factor on both sides
    losses = logged(runner, "train/loss")
    assert losses[-1] < losses[0]


RESUME_JOB = """
import json, sys, torch
sys.path.insert(0, 'tests/helpers')
import visdet_mmext
from runner_utils import make_runner
from toy import ToyMLP
schedule = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
            dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=False, begin=5, end=20)]
runner = make_runner({work_dir!r}, dict(optimizer=dict(type='Muon', lr=0.02, weight_decay=0.01),
                     constructor='VisdetOptimWrapperConstructor'), model=ToyMLP(), max_iters=20,
                     param_scheduler=schedule, checkpoint_interval=10, **{extra})
runner.train()
print(json.dumps([p.detach().flatten().tolist() for p in runner.model.parameters()]))
"""


@pytest.mark.slow
def test_resume_in_a_new_process_equals_an_uninterrupted_run(tmp_path):
    full = run_python(RESUME_JOB.format(work_dir=str(tmp_path / "a"), extra={}))
    uninterrupted = json.loads(full.stdout.strip().splitlines()[-1])
    checkpoint = str(tmp_path / "a" / "iter_10.pth")
    resumed = run_python(RESUME_JOB.format(work_dir=str(tmp_path / "b"),
                                           extra=dict(resume=True, load_from=checkpoint)))
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == uninterrupted
