"""Muon routing read from the loss graph under FSDP2: through mmengine's real FlexibleRunner with
``FullyShardStrategy`` on 2 gloo processes, the first step moves what a one-process run moves, on
every rank, before any state exists; the parameters follow the unsharded run; a resume keeps the
checkpoint's routing; copies nobody records keep the structural routing, with a warning.

The runs are part of the shared torchrun of tests/jobs/fsdp_optimizers.py (the ``fsdp_job``
fixture; tests/jobs/fsdp_traced_routing.py); the one-process reference runs here.
"""
import os.path as osp

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from demo_utils import assert_same_tensors, state_of
from fsdp_traced_routing import BATCH, ITERS, MUON, sides
from routing_models import RefPointNet, ref_point_data
from visdet_mmext.optim.routing import route_parameters

pytestmark = pytest.mark.slow
EXACT = 1e-5  # relative, as tests/algorithms/test_fsdp_optimizers.py (FSDP averages the halves)
#: RefPointNet's matrices that structure puts on Muon and the loss graph moves to AdamW
MOVED = {"ref_point.weight", "query_pos.weight"}


@pytest.fixture(scope="module")
def one_process():
    """The unsharded model trained on the whole batches the ranks split: its sides after the
    first step, and its parameters after each step."""
    torch.manual_seed(0)
    model = RefPointNet()
    wrapper = build_optim_wrapper(model, MUON)
    data = ref_point_data(n=ITERS * BATCH * 2)
    params, first_sides = [], None
    for step in range(ITERS):
        batch = {key: value[step * 2 * BATCH:(step + 1) * 2 * BATCH] for key, value in data.items()}
        wrapper.update_params(sum(model(**batch, mode="loss").values()))
        first_sides = first_sides or sides(wrapper.optimizer)
        params.append({name: p.detach().clone() for name, p in model.named_parameters()})
    return first_sides, params


@pytest.fixture(scope="module")
def routing(fsdp_job):
    return fsdp_job["routing"]


def _checkpoint(routing, run: str, step: int) -> dict:
    return state_of(osp.join(routing["work_dir"], run, f"iter_{step}.pth"))


def _saved_sides(checkpoint) -> dict:
    return {name: "Muon" if group["use_muon"] else "AdamW"
            for group in checkpoint["optimizer"]["param_groups"]
            for name in group["param_names"] if checkpoint["state_dict"][name].ndim >= 2}


def test_the_sharded_first_step_moves_what_one_process_moves(routing, one_process):
    expected, _ = one_process
    structural = {r.name: r.side for r in route_parameters(RefPointNet()).routes
                  if len(r.shape) >= 2}
    assert {n for n in expected if expected[n] != structural[n]} == MOVED  # the graph corrects
    assert expected["mix.weight"] == "Muon"  # behind FSDP2's node on the gate's two inputs
    for rank in routing["ranks"]:
        assert rank["full"]["sides"] == expected
        messages = rank["full"]["messages"]
        for name in MOVED:
            assert any(f"{name} moved to AdamW: final predictor" in m for m in messages)
        assert not any(m.startswith("WARNING") for m in messages), messages
    assert _saved_sides(_checkpoint(routing, "full", 1)) == expected


def test_the_sharded_parameters_follow_the_unsharded_run(routing, one_process):
    _, params = one_process
    for step in (1, ITERS):
        saved = _checkpoint(routing, "full", step)["state_dict"]
        for name, reference in params[step - 1].items():
            error = (saved[name].double() - reference.double()).norm() / reference.double().norm()
            assert error <= EXACT, f"step {step}, {name}: {error:.2e}"


def test_a_sharded_resume_keeps_the_checkpoints_routing_exactly(routing, one_process):
    expected, _ = one_process
    for rank in routing["ranks"]:
        assert rank["resumed"]["sides"] == expected
        assert any("resumed with the checkpoint's routing (2 tensor(s) moved" in m
                   for m in rank["resumed"]["messages"])
    full, resumed = _checkpoint(routing, "full", ITERS), _checkpoint(routing, "resumed", ITERS)
    assert_same_tensors(full["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(full["optimizer"], resumed["optimizer"], "optimizer")


def test_copies_nobody_records_keep_the_structural_routing_with_a_warning(routing):
    for rank in routing["ranks"]:
        unrecorded = rank["unrecorded"]
        # the structural routing (the head, a module of its own kind, looks hidden to it); a
        # walk blind to the head's product would have moved ``hidden`` as a final predictor
        assert unrecorded["sides"] == {"stem.weight": "AdamW", "hidden.weight": "Muon",
                                       "head.weight": "Muon"}
        warnings = [m for m in unrecorded["messages"] if m.startswith("WARNING")]
        assert len(warnings) == 1 and "cannot be matched to the optimizer's (head.weight: " \
            "no FSDP2 unit of the model holds it" in warnings[0], warnings
        assert "structural routing stays" in warnings[0]
