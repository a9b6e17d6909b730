"""Native Lion, LAMB, ADOPT, Adan and Muon on CUDA: every path against float64 oracles and against each other,
in fp32 and bf16; the grouped compiled path and the zero-padded bf16 Newton-Schulz batches run."""
from __future__ import annotations

import pytest
import torch

from cuda_utils import DEVICE, state_tensors
from native_utils import PATHS, fresh, fresh_compiler, make_problem, run  # noqa: F401
from oracles import reference_adan, reference_adopt, reference_lamb, reference_lion, reference_muon
from visdet_mmext.algorithms import dispatch
from visdet_mmext.algorithms.adan import Adan
from visdet_mmext.algorithms.adopt import ADOPT
from visdet_mmext.algorithms.lamb import LAMB
from visdet_mmext.algorithms.lion import Lion
from visdet_mmext.algorithms.muon import Muon
from visdet_mmext.algorithms.muon import optimizer as muon_optimizer
from visdet_mmext.algorithms.muon.newton_schulz import orthogonalize, orthogonalize_many

#: storage dtype and the tolerance on max|actual - oracle| / max|oracle| (fp32 arithmetic lands
#: far under 1e-3, bf16 storage between 1e-3 and 1e-2)
DTYPES = {"fp32": (torch.float32, 1e-5), "bf16": (torch.bfloat16, 1e-2)}
#: the native tests' shapes and one odd-sized matrix, so kernels see a ragged tail
SHAPES = [(40, 24), (24,), (96,), (6, 5, 3, 2), (300, 257)]
MATRICES = [(32, 16), (16, 48), (32, 16), (24, 24), (8, 4, 3, 3), (32, 2, 2, 2), (300, 257)]


pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("fresh_compiler")]


def problem(storage, shapes=SHAPES, seed=0, steps=20, scale=1.0):
    """A random problem rounded to ``storage`` on the CPU (the oracle's input) and its CUDA copy."""
    init, grads = make_problem(seed=seed, steps=steps, shapes=shapes)
    init = [(t * scale).to(storage) for t in init]
    grads = [[g.to(storage) for g in step] for step in grads]
    return init, grads, [t.to(DEVICE) for t in init], [[g.to(DEVICE) for g in s] for s in grads]


def rel_err(actual, expected) -> float:
    return max(((a.detach().cpu().double() - e.detach().cpu().double()).abs().max()
                / e.detach().cpu().double().abs().max()).item() for a, e in zip(actual, expected))


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


def train_every_path(factory, init, grads) -> dict:
    """Parameters after training with each path; the compiled one must really compile."""
    results = {}
    for path, flags in PATHS.items():
        before = graphs_compiled()
        params = fresh(init)
        optimizer = factory(params, **flags)
        run(optimizer, params, grads)
        assert all(p.device.type == DEVICE.type and p.dtype == init[0].dtype for p in params)
        for key, state in state_tensors(optimizer):
            assert state.device.type == DEVICE.type and state.dtype == init[0].dtype, key
        compiled = graphs_compiled() - before
        assert compiled > 0 if path == "compiled" else compiled == 0, (path, compiled)
        results[path] = params
    return results


def assert_paths_match(results, expected, tolerance):
    for path, params in results.items():
        assert rel_err(params, expected) <= tolerance, (path, rel_err(params, expected))
        assert rel_err(params, results["single"]) <= tolerance, path


def test_cuda_takes_the_grouped_compiled_path():
    assert dispatch.choose_path(None, None, DEVICE) == (dispatch.COMPILED, dispatch.FOREACH)
    assert dispatch.strategy_for(DEVICE) == dispatch.GROUPED


@pytest.mark.parametrize("dtype", DTYPES)
def test_lion_paths_match_the_float64_oracle(dtype):
    storage, tolerance = DTYPES[dtype]
    # the native tests' small shapes: where beta1*m + (1-beta1)*g lands within rounding of 0,
    # fp32 and float64 may take different signs (a 2*lr step apart), rarer the fewer elements
    init, grads, cuda_init, cuda_grads = problem(storage, SHAPES[:-1])
    kw = dict(lr=3e-3, betas=(0.9, 0.99), weight_decay=0.5)
    expected = reference_lion(init, grads, kw["lr"], kw["betas"], kw["weight_decay"], storage)
    results = train_every_path(lambda ps, **flags: Lion(ps, **kw, **flags), cuda_init, cuda_grads)
    assert_paths_match(results, expected, tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lamb_paths_match_the_float64_oracle(dtype):
    storage, tolerance = DTYPES[dtype]
    init, grads, cuda_init, cuda_grads = problem(storage, seed=1)
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
    expected = reference_lamb(init, grads, kw["lr"], kw["betas"], kw["eps"], kw["weight_decay"],
                              storage=storage)
    results = train_every_path(lambda ps, **flags: LAMB(ps, **kw, **flags), cuda_init, cuda_grads)
    assert_paths_match(results, expected, tolerance)


def test_adopt_and_adan_paths_match_the_float64_oracle():
    init, grads, cuda_init, cuda_grads = problem(torch.float32, seed=2)
    adopt = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1, decouple=True)
    expected = reference_adopt(init, grads, **adopt)
    results = train_every_path(lambda ps, **flags: ADOPT(ps, **adopt, **flags), cuda_init,
                               cuda_grads)
    assert_paths_match(results, expected, 2e-5)
    adan = dict(lr=1e-2, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.02, max_grad_norm=5.0)
    expected = reference_adan(init, grads, **adan)
    results = train_every_path(lambda ps, **flags: Adan(ps, **adan, **flags), cuda_init,
                               cuda_grads)
    assert_paths_match(results, expected, 2e-5)


MUON = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1, ns_steps=5)


@pytest.fixture
def padded_calls(monkeypatch):
    """The ``pad`` flag of every batched Newton-Schulz call the Muon step makes."""
    calls = []

    def spy(matrices, steps, dtype, pad=False):
        calls.append(pad)
        return orthogonalize_many(matrices, steps, dtype, pad=pad)

    monkeypatch.setattr(muon_optimizer, "orthogonalize_many", spy)
    return calls


def test_muon_fp32_newton_schulz_paths_match_the_float64_oracle(padded_calls):
    init, grads, cuda_init, cuda_grads = problem(torch.float32, MATRICES, seed=2, scale=0.1)
    expected = reference_muon([t.double() for t in init],
                              [[g.double() for g in step] for step in grads],
                              adjust_lr="original", **MUON)
    # single: the per-matrix loop; foreach: batches of one shape; compiled: the small matrices
    # of every shape in one zero-padded batch
    pads = {"single": set(), "foreach": {False}, "compiled": {True}}
    results = {}
    for path, flags in PATHS.items():
        padded_calls.clear()
        params = fresh(cuda_init)
        optimizer = Muon(params, ns_dtype=torch.float32, **MUON, **flags)
        results[path] = run(optimizer, params, cuda_grads)
        assert set(padded_calls) == pads[path], (path, padded_calls)
        assert all(state.device.type == DEVICE.type for _, state in state_tensors(optimizer))
    assert_paths_match(results, expected, 1e-4)


def test_muon_bf16_newton_schulz_paths_match_torch_muon():
    """bf16 Newton-Schulz (the CUDA default) against torch.optim.Muon, which runs it in bf16."""
    _, _, cuda_init, cuda_grads = problem(torch.float32, MATRICES[:4] + MATRICES[6:], seed=3,
                                          scale=0.1)
    expected = run(torch.optim.Muon(ref := fresh(cuda_init), adjust_lr_fn="original", **MUON),
                   ref, cuda_grads)
    results = {}
    for path, flags in PATHS.items():
        params = fresh(cuda_init)
        optimizer = Muon(params, **MUON, **flags)
        assert optimizer._ns_dtype(DEVICE) == torch.bfloat16
        results[path] = run(optimizer, params, cuda_grads)
    assert_paths_match(results, expected, 1e-2)


def test_muon_adamw_side_matches_torch_adamw():
    _, _, cuda_init, cuda_grads = problem(torch.float32, [(40,), (7,), (96,), (3000,)], seed=4)
    expected = run(torch.optim.AdamW(ref := fresh(cuda_init), lr=1e-3, betas=(0.9, 0.95),
                                     eps=1e-8, weight_decay=0.1), ref, cuda_grads)
    results = train_every_path(
        lambda ps, **flags: Muon(ps, lr=1e-3, adjust_lr="match_rms_adamw", weight_decay=0.1,
                                 **flags), cuda_init, cuda_grads)
    assert_paths_match(results, expected, 1e-5)


#: bf16's unit roundoff: 8 significant bits
BF16_U = 2.0 ** -9


def test_zero_padded_batches_are_as_accurate_as_per_matrix_newton_schulz():
    """Zero padding is exact arithmetic (zero rows and columns stay zero and add nothing to the
    norm): in fp32 the padded batch equals the per-matrix loop. In bf16 only the order of the fp32
    accumulations differs, so against the fp32 result the padded batch may be no less accurate
    than bf16 per matrix: at most twice its error (or 8 roundings, where that is tiny). On the CPU,
    over 900 random matrices of these and other shapes, the ratio never exceeded 1.0
    (docs/gpu.md). bf16 per matrix itself stays within 0.25 of fp32 (worst on the CPU: 0.14, an
    8 x 8 matrix whose smallest singular values the iteration amplifies most)."""
    gen = torch.Generator(device=DEVICE).manual_seed(5)
    mats = [torch.randn(s, generator=gen, device=DEVICE)
            for s in [(24, 40), (40, 24), (8, 8), (24, 40), (3, 17), (64, 576), (256, 64)]]
    fp32 = [orthogonalize(m, 5, torch.float32) for m in mats]
    per_matrix = [orthogonalize(m, 5, torch.bfloat16) for m in mats]
    for dtype in (torch.float32, torch.bfloat16):
        for got, m in zip(orthogonalize_many(mats, 5, dtype, pad=True), mats):
            assert got.shape == m.shape and got.dtype == dtype and got.device.type == DEVICE.type
    padded32 = orthogonalize_many(mats, 5, torch.float32, pad=True)
    padded16 = orthogonalize_many(mats, 5, torch.bfloat16, pad=True)
    for m, want, alone, got32, got16 in zip(mats, fp32, per_matrix, padded32, padded16):
        shape = tuple(m.shape)
        assert rel_err([got32], [want]) <= 1e-5, shape
        bf16_error = rel_err([alone], [want])
        assert bf16_error <= 0.25, (shape, bf16_error)
        assert rel_err([got16], [want]) <= 2 * max(bf16_error, 8 * BF16_U), \
            (shape, rel_err([got16], [want]), bf16_error)
    svals = torch.linalg.svdvals(padded16[5].float())  # bf16 still lands in ~[0.7, 1.2]
    assert 0.5 < svals.min() and svals.max() < 1.4


def test_lr_schedule_does_not_recompile_the_grouped_step():
    _, _, cuda_init, cuda_grads = problem(torch.float32, seed=6, steps=6)
    params = fresh(cuda_init)
    optimizer = Lion(params, lr=1e-3)
    for i, step_grads in enumerate(cuda_grads):
        if i == 1:
            compiled = graphs_compiled()
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.5 ** i
        run(optimizer, params, [step_grads])
    assert compiled > 0 and graphs_compiled() == compiled
