"""Routing corrected from the loss graph at the first step: moves, the plain-loop path, user
rules, bad input, checkpoints (record, resume, disagreement), and faithful trees of RepVGG,
MobileOne and LeViT (parallel stems, bias tables)."""
import fnmatch
import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch import nn

import visdet_mmext
from reparam_models import REPARAM_MODELS
from routing_models import WideHeadClassifier
from runner_utils import make_runner
from visdet_mmext.algorithms.muon import Muon
from visdet_mmext.errors import CheckpointMismatchError
from visdet_mmext.optim.grouping_check import RECORD_KEY
from visdet_mmext.optim.routing import route_parameters
from visdet_mmext.optim.traced_routing import attach

CTOR = "VisdetOptimWrapperConstructor"


class WideHead(nn.Module):
    """The classifier is as wide as the hidden layer, so structure calls it hidden; the loss
    graph shows the loss reads it directly. ``aux`` is computed and returned, never in the loss."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(6, 16)
        self.hidden = nn.Linear(16, 16)
        self.classifier = nn.Linear(16, 16)
        self.aux = nn.Linear(16, 16)

    def forward(self, x):
        h = torch.relu(self.hidden(torch.relu(self.stem(x))))
        return self.classifier(h), self.aux(h)


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 6, generator=generator), torch.randint(0, 16, (8,), generator=generator)


def _loss(model, seed=0):
    x, y = _data(seed)
    return F.cross_entropy(model(x)[0], y)


def _sides(optimizer):
    return {name: "Muon" if group["use_muon"] else "AdamW" for group in optimizer.param_groups
            for name, p in zip(group["param_names"], group["params"]) if p.ndim >= 2}


def _wrapper(model, **paramwise):
    return build_optim_wrapper(model, dict(optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01),
                                           constructor=CTOR, paramwise_cfg=paramwise or None))


@pytest.fixture
def messages():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield lambda level=logging.INFO: [r.getMessage() for r in records if r.levelno >= level]
    logger.removeHandler(handler)


def test_update_params_moves_the_predictor_before_the_first_step(messages):
    torch.manual_seed(0)
    model = WideHead()
    wrapper = _wrapper(model)
    assert _sides(wrapper.optimizer)["classifier.weight"] == "Muon"  # structure: width 16 is read
    groups_before = len(wrapper.optimizer.param_groups)
    wrapper.update_params(_loss(model))
    sides = _sides(wrapper.optimizer)
    assert sides == {"stem.weight": "AdamW", "hidden.weight": "Muon", "classifier.weight": "AdamW",
                     "aux.weight": "Muon"}  # aux: not in the loss, so structure decides
    assert len(wrapper.optimizer.param_groups) == groups_before  # no group added after the build
    state = wrapper.optimizer.state[model.classifier.weight]
    assert "exp_avg" in state and "momentum_buffer" not in state  # the step ran it as AdamW
    logged = messages()
    assert any(m.startswith("Muon routing: classifier.weight moved to AdamW: final predictor")
               and "exclude=['classifier.weight']" in m for m in logged), logged
    assert any("does not reach 1 matrix tensor(s)" in m and "aux.weight" in m
               for m in messages(logging.WARNING))


def test_a_moved_parameter_keeps_its_paramwise_settings():
    model = WideHead()
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01, adamw_lr=1e-3),
        constructor=CTOR, paramwise_cfg=dict(custom_keys={"classifier": dict(lr_mult=0.5,
                                                                             decay_mult=0.0)})))
    wrapper.update_params(_loss(model))
    group = next(g for g in wrapper.optimizer.param_groups if "classifier.weight" in g["param_names"])
    assert (group["use_muon"], group["lr"], group["weight_decay"]) == (False, 5e-4, 0.0)


def test_user_rules_win_over_the_graph():
    model = WideHead()
    wrapper = _wrapper(model, muon=dict(include=["classifier.weight"]),
                       custom_keys={"stem": dict(use_muon=True)})
    wrapper.update_params(_loss(model))
    sides = _sides(wrapper.optimizer)
    assert sides["classifier.weight"] == sides["stem.weight"] == "Muon"


def test_a_plain_pytorch_loop_gets_the_traced_routing_at_the_first_step():
    """build_optimizer, loss.backward(), optimizer.step(): the loss read aux's sibling only."""
    torch.manual_seed(0)
    model = WideHead()
    optimizer = visdet_mmext.build_optimizer(model, "Muon", lr=0.02, weight_decay=0.01)
    assert isinstance(optimizer, torch.optim.Optimizer)
    for step in range(2):
        optimizer.zero_grad()
        _loss(model, step).backward()
        optimizer.step()
    assert _sides(optimizer) == {"stem.weight": "AdamW", "hidden.weight": "Muon",
                                 "classifier.weight": "AdamW", "aux.weight": "Muon"}
    assert optimizer.traced_routing.state == "done"


def test_build_optimizer_checks_like_a_config():
    with pytest.raises(visdet_mmext.OptimizerConfigError, match="Did you mean weight_decay"):
        visdet_mmext.build_optimizer(WideHead(), "Muon", lr=0.02, weight_decays=0.1)
    with pytest.raises(visdet_mmext.OptimizerConfigError, match="only apply to optimizer type 'Muon'"):
        visdet_mmext.build_optimizer(WideHead(), "AdamW", lr=1e-3, muon=dict(exclude=["x"]))
    adamw = visdet_mmext.build_optimizer(WideHead(), "AdamW", lr=1e-3, weight_decay=0.05,
                                         bias_decay_mult=0.0)
    assert type(adamw) is torch.optim.AdamW and len(adamw.param_groups) == 8


def test_a_loss_without_graph_keeps_the_structure_with_one_warning(messages):
    model = WideHead()
    wrapper = _wrapper(model)
    before = _sides(wrapper.optimizer)
    with torch.no_grad():
        loss = _loss(model)
    with pytest.raises(RuntimeError):  # torch's own error: the loss cannot be differentiated
        wrapper.update_params(loss)
    wrapper.update_params(_loss(model))  # the next step trains on, no change after the first try
    assert _sides(wrapper.optimizer) == before
    warned = [m for m in messages(logging.WARNING) if "no autograd graph" in m]
    assert len(warned) == 1


def _trained(seed=0, **paramwise):
    torch.manual_seed(seed)
    model = WideHead()
    wrapper = _wrapper(model, **paramwise)
    wrapper.update_params(_loss(model))
    return model, wrapper


def test_the_checkpoint_records_the_routing_and_a_resume_uses_it(messages):
    model, wrapper = _trained()
    state = wrapper.state_dict()
    assert state[RECORD_KEY]["routing"] == {"settled": True, "moved": {"classifier.weight": False}}
    resumed = _wrapper(model)  # a fresh run: structure first
    assert _sides(resumed.optimizer)["classifier.weight"] == "Muon"
    resumed.load_state_dict(state)
    assert _sides(resumed.optimizer) == _sides(wrapper.optimizer)
    for a, b in zip(resumed.optimizer.param_groups, wrapper.optimizer.param_groups):
        assert a["param_names"] == b["param_names"]
    resumed.update_params(_loss(model, 1))
    wrapper.update_params(_loss(model, 1))
    assert all(torch.equal(resumed.optimizer.state[p]["exp_avg"], wrapper.optimizer.state[p]["exp_avg"])
               for p in [model.classifier.weight])
    assert any("resumed with the checkpoint's routing (1 tensor(s) moved" in m for m in messages())
    assert not any("disagrees" in m for m in messages())


def test_a_resumed_run_whose_graph_disagrees_says_so_and_keeps_the_checkpoint(messages):
    model, wrapper = _trained()
    state = wrapper.state_dict()
    resumed = _wrapper(model)
    resumed.load_state_dict(state)
    x, y = _data(1)
    resumed.update_params(F.cross_entropy(model(x)[1], y))  # this run's loss reads aux instead
    assert _sides(resumed.optimizer) == _sides(wrapper.optimizer)
    [warning] = [m for m in messages(logging.WARNING) if "disagrees" in m]
    # the classifier is not in this loss: no verdict on it
    assert "for 1 tensor(s): aux.weight -> AdamW (final predictor" in warning


def test_a_checkpoint_saved_before_the_first_step_leaves_the_graph_to_decide():
    model = WideHead()
    early = _wrapper(model).state_dict()
    assert early[RECORD_KEY]["routing"]["settled"] is False
    wrapper = _wrapper(model)
    wrapper.load_state_dict(early)
    wrapper.update_params(_loss(model))
    assert _sides(wrapper.optimizer)["classifier.weight"] == "AdamW"


def test_a_checkpoint_without_a_routing_record_keeps_its_routing(messages):
    torch.manual_seed(0)
    model = WideHead()
    structural = _wrapper(model)
    model.eval()  # a forward outside training mode shows no graph: the structure stays
    _loss(model).backward()
    structural.step()
    model.train()
    state = structural.state_dict()
    assert state["state"] and state[RECORD_KEY]["routing"] == {"settled": True, "moved": {}}
    del state[RECORD_KEY]["routing"]  # as an older version wrote it
    resumed = _wrapper(model)
    resumed.load_state_dict(state)
    resumed.update_params(_loss(model))
    assert _sides(resumed.optimizer)["classifier.weight"] == "Muon"
    assert any("resumed with the checkpoint's routing (0 tensor(s) moved" in m for m in messages())


def test_the_grouping_check_still_names_what_moved():
    model, wrapper = _trained()
    state = wrapper.state_dict()
    other = _wrapper(model, muon=dict(exclude=["hidden.weight"]))
    with pytest.raises(CheckpointMismatchError, match="hidden.weight: checkpoint group"):
        other.load_state_dict(state)


def test_where_groups_are_fixed_early_the_graph_only_reports(messages):
    """DeepSpeed ZeRO partitions the groups when its engine starts: nothing moves, the log says
    how to pin the traced routing."""
    model = WideHead()
    routing = route_parameters(model)
    sides = {route.name: route.use_muon for route in routing.routes}
    wrapper = OptimWrapper(Muon([dict(params=[p], param_names=[n], use_muon=sides[n])
                                 for n, p in model.named_parameters()], lr=0.02))
    attach(wrapper, model, routing, {}, fixed=True)
    wrapper.update_params(_loss(model))
    assert _sides(wrapper.optimizer)["classifier.weight"] == "Muon"
    assert any("paramwise_cfg.muon=dict(exclude=['classifier.weight'])" in m
               for m in messages(logging.WARNING))


@pytest.mark.parametrize("name", REPARAM_MODELS)
def test_parallel_stems_and_bias_tables_by_structure_and_by_the_graph(name):
    build, adamw = REPARAM_MODELS[name]
    torch.manual_seed(0)
    model = build()
    expected = {n: "AdamW" if any(fnmatch.fnmatchcase(n, p) for p in adamw) else "Muon"
                for n, p in model.named_parameters() if p.ndim >= 2}
    structural = {r.name: r.side for r in route_parameters(model).routes if len(r.shape) >= 2}
    assert structural == expected
    wrapper = _wrapper(model)
    wrapper.update_params(model(torch.randn(2, 3, 32, 32)).square().mean())
    assert _sides(wrapper.optimizer) == expected
    reasons = wrapper.optimizer.traced_routing.routing.by_name()
    stems = [n for n in expected if n.startswith(("stage0.", "patch_embed.0."))]
    assert stems and all(reasons[n].reason.startswith("stem") for n in stems)


def test_the_runner_resumes_a_traced_routing_exactly(tmp_path):
    """Train 8 iterations; resume a fresh Runner from iteration 4: the same weights at the end."""
    optim = dict(optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01), constructor=CTOR)
    full = make_runner(tmp_path / "full", optim, model=WideHeadClassifier(), max_iters=8,
                       checkpoint_interval=4)
    full.train()
    assert _sides(full.optim_wrapper.optimizer)["head.weight"] == "AdamW"  # moved at the first step
    resumed = make_runner(tmp_path / "resumed", optim, model=WideHeadClassifier(), max_iters=8,
                          resume=True, load_from=str(tmp_path / "full" / "iter_4.pth"))
    resumed.train()
    assert _sides(resumed.optim_wrapper.optimizer) == _sides(full.optim_wrapper.optimizer)
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(a, b), name
