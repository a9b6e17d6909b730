"""Muon routing on Hugging Face transformers models built from their configs (no download),
trained through mmengine's OptimWrapper with their own losses: after the first step every
tensor with >= 2 dims is on the side its role gives it (tests/helpers/hf_models.py)."""
import fnmatch
import functools
import json
import os

import pytest
from mmengine.optim import build_optim_wrapper

import hf_models
from demo_utils import ROOT, torchrun
from visdet_mmext.optim.routing import route_parameters

pytestmark = pytest.mark.usefixtures("one_thread")

MUON = dict(optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01),
            constructor="VisdetOptimWrapperConstructor")


def _sides(optimizer) -> dict[str, str]:
    return {name: "Muon" if group["use_muon"] else "AdamW"
            for group in optimizer.param_groups
            for name, p in zip(group["param_names"], group["params"]) if p.ndim >= 2}


def _wrong(model_name: str, sides: dict[str, str], allowed=()) -> list[str]:
    return [f"{name}: {side}" for name, side in sides.items()
            if side != hf_models.expected_side(model_name, name)
            and not any(fnmatch.fnmatchcase(name, p) for p in allowed)]


@functools.lru_cache(maxsize=None)
def _first_step(name: str):
    model = hf_models.build(name)
    wrapper = build_optim_wrapper(model, MUON)
    wrapper.update_params(hf_models.loss(model, hf_models.HF_MODELS[name][1](0)))
    return model, wrapper.optimizer


@pytest.mark.parametrize("name", hf_models.HF_MODELS)
def test_every_matrix_is_on_its_side_after_the_first_step(name):
    model, optimizer = _first_step(name)
    sides = _sides(optimizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    assert set(sides) == trainable
    assert not _wrong(name, sides)
    # the step ran each on its side: Muon keeps a momentum buffer, AdamW two moments
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                assert ("momentum_buffer" if group["use_muon"] else "exp_avg") in optimizer.state[p]


@pytest.mark.parametrize("name", hf_models.HF_MODELS)
def test_the_structure_alone_errs_only_where_widths_mislead(name):
    model, _ = _first_step(name)
    sides = {r.name: r.side for r in route_parameters(model).routes if len(r.shape) >= 2}
    misses = hf_models.STRUCTURE_MISSES.get(name, ())
    assert not _wrong(name, sides, allowed=misses)
    for pattern in misses:  # the list stays honest: each entry is a real miss
        assert _wrong(name, {n: s for n, s in sides.items() if fnmatch.fnmatchcase(n, pattern)})


def test_the_distillation_head_trains_like_the_classifier():
    _, optimizer = _first_step("levit")
    sides = _sides(optimizer)
    assert sides["classifier.linear.weight"] == sides["classifier_distill.linear.weight"] == "AdamW"


@pytest.mark.slow
def test_two_ddp_ranks_agree_and_distributed_muon_keeps_them_equal():
    """Each rank reads its own batch's graph; the ranks OR their readings before the first step.
    ``two_heads``: rank 0's loss reads head_a only, rank 1's head_b only."""
    result = torchrun(2, os.path.join(ROOT, "tests", "jobs", "hf_routing_ddp.py"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_model: dict = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["rank"]] = row
    assert set(by_model) == set(hf_models.HF_MODELS) | {"two_heads"}
    for name, ranks in by_model.items():
        assert ranks[0]["sides"] == ranks[1]["sides"], name
        assert ranks[0]["checksum"] == ranks[1]["checksum"], name  # same parameters after the step
        if name in hf_models.ADAMW:
            assert not _wrong(name, ranks[0]["sides"]), name
    heads = by_model["two_heads"][0]["sides"]
    assert heads["head_a.weight"] == heads["head_b.weight"] == "AdamW"
    assert heads["hidden.weight"] == "Muon"
