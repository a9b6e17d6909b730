"""The ZeRO(-Offload) optimizer mapping and the DeepSpeed config reading, as pure functions.

No DeepSpeed engine: these check what the strategy will hand to ``deepspeed.initialize`` (the
engine tests in test_zero_offload.py run it), with DeepSpeed's own tested-optimizer check.
"""
import functools

import pytest
import torch
from torch import nn

import visdet_mmext  # noqa: F401  (registers the optimizers)
from visdet_mmext.deepspeed.config import normalize, offloads_optimizer
from visdet_mmext.errors import DeepSpeedConfigError
from visdet_mmext.deepspeed import offload
from visdet_mmext.deepspeed.offload import CPU_ADAM, CPU_LION

deepspeed_zero = pytest.importorskip("deepspeed.runtime.zero.utils")
plan_optimizer = functools.partial(  # DeepSpeed's list (its check function needs a process group)
    offload.plan_optimizer, zero_tested=lambda o: type(o) in deepspeed_zero.ZERO_SUPPORTED_OPTIMIZERS)

ZERO2_OFFLOAD = {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}
ZERO2 = {"zero_optimization": {"stage": 2}}


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8),
                         nn.Flatten(), nn.Linear(8, 4))


def groups(net):
    """Two groups with different settings, like paramwise_cfg makes (decay off for 1-D)."""
    matrices = [p for p in net.parameters() if p.ndim > 1]
    vectors = [p for p in net.parameters() if p.ndim <= 1]
    return [{"params": matrices}, {"params": vectors, "weight_decay": 0.0, "lr": 5e-4}]


@pytest.mark.parametrize("cls, adamw_mode", [(torch.optim.AdamW, True), (torch.optim.Adam, False)])
def test_adam_family_maps_to_cpu_adam_keeping_every_group(cls, adamw_mode):
    net = model()
    optimizer = cls(groups(net), lr=1e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05)
    plan = plan_optimizer(optimizer, ZERO2_OFFLOAD)
    assert plan.kind == "client" and plan.target == CPU_ADAM
    assert plan.defaults == {"lr": 1e-3, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.05,
                             "adamw_mode": adamw_mode}
    assert [g["params"] for g in plan.groups] == [g["params"] for g in optimizer.param_groups]
    assert plan.groups[1]["weight_decay"] == 0.0 and plan.groups[1]["lr"] == 5e-4
    assert plan.groups[0]["betas"] == (0.8, 0.9) and plan.groups[0]["eps"] == 1e-6
    assert not {"foreach", "fused", "amsgrad", "maximize"} & set(plan.groups[0])
    assert "DeepSpeedCPUAdam" in plan.notes[0]


def test_adam_with_decoupled_weight_decay_is_adamw():
    optimizer = torch.optim.Adam(model().parameters(), weight_decay=0.1, decoupled_weight_decay=True)
    assert plan_optimizer(optimizer, ZERO2_OFFLOAD).defaults["adamw_mode"] is True


def test_settings_cpu_adam_cannot_express_are_refused():
    optimizer = torch.optim.AdamW(model().parameters(), amsgrad=True)
    with pytest.raises(DeepSpeedConfigError, match="amsgrad.*offload_optimizer"):
        plan_optimizer(optimizer, ZERO2_OFFLOAD)


def test_native_lion_maps_to_cpu_lion():
    from visdet_mmext.algorithms.lion import Lion
    net = model()
    optimizer = Lion(groups(net), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.5)
    plan = plan_optimizer(optimizer, ZERO2_OFFLOAD)
    assert plan.target == CPU_LION
    assert plan.defaults == {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.5}
    assert plan.groups[1]["lr"] == 5e-4 and plan.groups[1]["weight_decay"] == 0.0


def test_adagrad_goes_through_deepspeeds_config_path():
    net = model()
    optimizer = torch.optim.Adagrad(groups(net), lr=0.01, eps=1e-10, weight_decay=1e-4)
    plan = plan_optimizer(optimizer, ZERO2_OFFLOAD)
    assert plan.kind == "config" and plan.target is None
    assert plan.config["optimizer"] == {"type": "Adagrad",
                                        "params": {"lr": 0.01, "eps": 1e-10, "weight_decay": 1e-4}}
    assert plan.groups[1]["lr"] == 5e-4
    with pytest.raises(DeepSpeedConfigError, match="lr_decay"):
        plan_optimizer(torch.optim.Adagrad(net.parameters(), lr_decay=0.1), ZERO2_OFFLOAD)


def test_unsupported_optimizer_under_offload_is_refused_with_the_fixes():
    optimizer = torch.optim.SGD(model().parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(DeepSpeedConfigError) as error:
        plan_optimizer(optimizer, ZERO2_OFFLOAD)
    message = str(error.value)
    for fix in ("'AdamW'", "'Lion'", "'Adagrad'", "allow_untested_optimizer=True",
                "remove offload_optimizer", "SGD"):
        assert fix in message


def test_opt_in_turns_on_deepspeeds_escape_hatches_with_a_warning():
    optimizer = torch.optim.SGD(model().parameters(), lr=0.1, momentum=0.9)
    plan = plan_optimizer(optimizer, ZERO2_OFFLOAD, allow_untested=True)
    assert plan.kind == "client" and plan.target is None
    assert plan.config["zero_force_ds_cpu_optimizer"] is False
    assert plan.config["zero_allow_untested_optimizer"] is True
    assert any("slower" in w for w in plan.warnings)
    # the user's own DeepSpeed switch counts as opting in
    plan = plan_optimizer(optimizer, {**ZERO2_OFFLOAD, "zero_force_ds_cpu_optimizer": False})
    assert plan.config["zero_allow_untested_optimizer"] is True


def test_per_parameter_rules_lost_to_flattening_are_named():
    from visdet_mmext.algorithms.lamb import LAMB
    plan = plan_optimizer(LAMB(model().parameters()), ZERO2_OFFLOAD, allow_untested=True)
    assert any("trust ratio" in w and "per parameter" in w for w in plan.warnings)


def test_matrix_only_and_closure_optimizers_are_refused_under_zero():
    net = nn.Linear(4, 4, bias=False)
    with pytest.raises(DeepSpeedConfigError, match="2-D.*type='Muon'"):
        plan_optimizer(torch.optim.Muon(net.parameters()), ZERO2, allow_untested=True)
    with pytest.raises(DeepSpeedConfigError, match="closure"):
        plan_optimizer(torch.optim.LBFGS(net.parameters()), ZERO2_OFFLOAD, allow_untested=True)


def test_without_offload_tested_and_elementwise_optimizers_pass():
    net = model()
    plan = plan_optimizer(torch.optim.AdamW(net.parameters()), ZERO2)
    assert plan.kind == "client" and plan.target is None and not plan.warnings
    plan = plan_optimizer(torch.optim.SGD(net.parameters(), lr=0.1), ZERO2)
    assert plan.config["zero_allow_untested_optimizer"] is True
    with pytest.raises(DeepSpeedConfigError, match="allow_untested_optimizer"):
        from visdet_mmext.algorithms.lamb import LAMB
        plan_optimizer(LAMB(net.parameters()), ZERO2)
    # stage 0 flattens nothing: any optimizer goes through unchanged
    plan = plan_optimizer(torch.optim.Muon([p for p in net.parameters() if p.ndim == 2]),
                          {"zero_optimization": {"stage": 0}})
    assert plan.kind == "client" and plan.target is None


def test_deepspeed_config_optimizer_block_is_dropped_with_a_warning():
    config = {**ZERO2_OFFLOAD, "optimizer": {"type": "Adam", "params": {"lr": 1}}}
    plan = plan_optimizer(torch.optim.AdamW(model().parameters()), config)
    assert plan.target == CPU_ADAM and "optimizer" not in plan.config
    assert any("'optimizer' block is ignored" in w for w in plan.warnings)


def test_hybrid_muon_runs_as_deepspeeds_muon_with_our_routing():
    from visdet_mmext.algorithms.muon import Muon
    net = model()
    muon = [net[1].weight]  # as routed: only the hidden conv on Muon
    adam = [p for p in net.parameters() if p is not net[1].weight]
    optimizer = Muon([{"params": muon, "use_muon": True},
                      {"params": adam, "use_muon": False, "lr": 3e-4}], lr=0.02, weight_decay=0.01)
    plan = plan_optimizer(optimizer, ZERO2_OFFLOAD)
    assert plan.kind == "config" and plan.config["optimizer"]["type"] == "Muon"
    assert plan.muon_tags == {id(p): p is net[1].weight for p in net.parameters()}
    assert plan.groups[0] == {"params": muon, "use_muon": True, "lr": 0.02, "momentum": 0.95,
                              "weight_decay": 0.01}
    assert plan.groups[1]["lr"] == 3e-4 and plan.groups[1]["betas"] == (0.9, 0.95)
    # stage 3 needs reduce_scatter off for DeepSpeed's Muon
    stage3 = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}
    assert plan_optimizer(optimizer, stage3).config["zero_optimization"]["reduce_scatter"] is False
    # settings DeepSpeed's Muon cannot reproduce are refused by name
    odd = Muon([{"params": muon, "use_muon": True, "nesterov": False}], lr=0.02)
    with pytest.raises(DeepSpeedConfigError, match="nesterov=False"):
        plan_optimizer(odd, ZERO2_OFFLOAD)
    odd = Muon([{"params": muon, "use_muon": True}], adjust_lr="match_rms_adamw")
    with pytest.raises(DeepSpeedConfigError, match="match_rms_adamw"):
        plan_optimizer(odd, ZERO2)


def test_legacy_cpu_offload_keys_become_offload_blocks():
    config, notes = normalize({"zero_optimization": {"stage": 3, "cpu_offload": True,
                                                     "cpu_offload_param": True,
                                                     "cpu_offload_use_pin_memory": False}})
    zero = config["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": False}
    assert "cpu_offload" not in zero and offloads_optimizer(config)
    assert any("offload_optimizer" in n and "deprecated" in n for n in notes)
    # mmengine's documented example: cpu_offload=False means no offload
    config, notes = normalize({"zero_optimization": {"stage": 3, "cpu_offload": False}})
    assert not offloads_optimizer(config) and "cpu_offload" not in config["zero_optimization"]


def test_conflicting_or_impossible_offload_settings_fail_early():
    with pytest.raises(DeepSpeedConfigError, match="remove cpu_offload and keep offload_optimizer"):
        normalize({"zero_optimization": {"stage": 2, "cpu_offload": True,
                                         "offload_optimizer": {"device": "cpu"}}})
    with pytest.raises(DeepSpeedConfigError, match="offload_param works only with ZeRO stage 3"):
        normalize({"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}})


@pytest.mark.parametrize("zero, words", [
    ({"stage": "two"}, "stage='two': ZeRO stages are the integers 0, 1, 2 and 3"),
    ({"stage": 4}, "stage=4"),
    ({"stage": 2, "offload_optimizer": {"device": "nvme"}}, "needs nvme_path"),
    ({"stage": 3, "offload_param": {"device": "nvme", "nvme_path": ""}}, "needs nvme_path"),
])
def test_the_strategy_refuses_stages_and_nvme_offload_deepspeed_fails_on_late(zero, words):
    """The strategy built from Python (no config file, so no check before the Runner)."""
    with pytest.raises(DeepSpeedConfigError, match=words):
        normalize({"zero_optimization": zero})
    assert normalize({"zero_optimization": {"stage": 3, "offload_param": {
        "device": "nvme", "nvme_path": "/local_nvme"}}})[0]["zero_optimization"]["stage"] == 3
