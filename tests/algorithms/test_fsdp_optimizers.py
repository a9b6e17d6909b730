"""Optimizers on FSDP2 shards (``fully_shard``, DTensor) against the same optimizer unsharded.

One torchrun of tests/jobs/fsdp_optimizers.py (2 gloo processes) runs every case; these tests
read what it recorded. The catalog rows say which names are exact on shards; the rest must be
refused before anything is built, with the fix named.
"""
import pytest

import visdet_mmext
from visdet_mmext.algorithms.muon.distributed import assign, ns_flops
from visdet_mmext.catalog import CATALOG

pytestmark = pytest.mark.slow
EXACT = 1e-5  # relative, after 5 steps (fp32; FSDP averages the two halves' gradients itself)


@pytest.fixture
def results(fsdp_job):
    return fsdp_job  # (one launch, shared with tests/fsdp/test_sharded_routing.py)


@pytest.mark.parametrize("case", [
    "Lion", "Lion fast=False", "Lion foreach=False", "LAMB", "LAMB foreach=False", "AdamW",
    "Muon", "Muon fast=False", "Muon foreach=False", "Muon distributed=False"])
def test_native_optimizers_on_shards_equal_the_unsharded_run(results, case):
    # Lion's C kernel used to be handed DTensors (SIGSEGV) and distributed Muon hung
    assert results["native"][case]["error"] <= EXACT


def test_sharded_muon_equals_single_process_muon_on_the_same_gradients(results):
    assert results["native"]["Muon same gradients"]["error"] <= 1e-6


def test_sharded_muon_orthogonalises_each_matrix_on_one_rank(results):
    # the job's Muon matrices (rows x cols): conv stem, hidden, mid, wide (Shard(1)), twin, head
    shapes = ((5, 3), (33, 80), (34, 33), (34, 34), (34, 34), (7, 34))
    costs = [ns_flops(rows, cols, 5) for rows, cols in shapes]
    owners = assign(costs, 2)
    rank0 = sum(c for c, owner in zip(costs, owners) if owner == 0)
    native = results["native"]
    assert native["Muon"]["ns_flops"] == pytest.approx(rank0) and rank0 < 0.6 * sum(costs)
    assert native["Muon distributed=False"]["ns_flops"] == pytest.approx(sum(costs))


def test_a_rank_that_orthogonalises_nothing_still_takes_its_slices(results):
    assert results["native"]["Muon one matrix"]["error"] <= EXACT
    assert results["native"]["Muon one matrix"]["ns_flops"] > 0  # rank 0 owns the matrix


def test_mixed_sharded_and_plain_parameters_in_one_optimizer(results):
    # plain parameters are data-parallel replicas (averaged gradients); the rest FSDP2 shards
    assert results["native"]["Muon mixed"]["error"] <= EXACT
    assert results["native"]["Lion mixed"]["error"] <= EXACT


@pytest.mark.parametrize("name", visdet_mmext.REPORT.usable_names())
def test_every_catalog_name_is_exact_on_shards_or_refused(results, name):
    outcome = results["catalog"][name]
    refusal = CATALOG[name].fsdp_impossible
    if refusal is None:
        assert "failed" not in outcome, outcome.get("traceback")
        assert outcome["error"] <= EXACT, f"{name}: {outcome['error']:.2e}"
        return
    # refused by the config check (tools, strategy) and by the constructor on a sharded model
    for where in ("config", "constructor"):
        if where == "constructor" and CATALOG[name].provider == "deepspeed":
            continue  # its op would JIT-build first
        message = outcome[where]
        assert message is not None, f"{name}: not refused by the {where}"
        assert refusal.reason in message and f"Fix: {refusal.fix}" in message
