"""What the fast paths accept: plain dense tensors only; nothing a user passes crashes the process.

(DTensors need a process group: tests/algorithms/test_fsdp_optimizers.py runs them on 2 ranks.)
"""
import pytest
import torch

from visdet_mmext.algorithms import shards
from visdet_mmext.algorithms.lion import Lion
from visdet_mmext.algorithms.muon import sharded


class Tagged(torch.Tensor):
    """A tensor subclass a user might hand over (e.g. a library's parameter type)."""


def test_only_plain_dense_tensors_are_plain():
    assert shards.plain(torch.zeros(3)) and shards.plain(torch.nn.Parameter(torch.zeros(3)))
    assert not shards.plain(torch.zeros(3).as_subclass(Tagged))
    assert not shards.plain(torch.zeros(3, device="meta"))
    assert not shards.plain(torch.zeros(3).to_sparse())
    assert not shards.plain(torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)]))
    assert shards.local_shards((torch.zeros(3), torch.zeros(3))) is None


@pytest.mark.parametrize("length", [0, 1, 5, 7, 33, 64])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 8])
def test_chunk_sizes_are_dtensors_split(length, parts):
    chunks = [c.numel() for c in torch.arange(length).chunk(parts)]
    assert sharded.chunk_sizes(length, parts) == chunks + [0] * (parts - len(chunks))


def _lion_run(params):
    optimizer = Lion(params, lr=0.1, weight_decay=0.1)
    for step in range(3):
        for p in params:
            p.grad = torch.full_like(p, float(step) - 0.5)
        optimizer.step()
    return [p.detach().as_subclass(torch.Tensor) for p in params]


def test_a_tensor_subclass_takes_the_eager_path_and_steps_the_same():
    torch.manual_seed(0)
    values = [torch.randn(70_000), torch.randn(5, 3)]  # the first large enough for the C kernel
    plain = _lion_run([torch.nn.Parameter(v.clone()) for v in values])
    tagged = _lion_run([torch.nn.Parameter(v.clone().as_subclass(Tagged)) for v in values])
    for a, b in zip(plain, tagged):
        assert torch.equal(a, b)


def test_a_state_of_the_wrong_shape_is_an_error_not_a_memory_overrun():
    p = torch.nn.Parameter(torch.randn(70_000))
    optimizer = Lion([p])
    p.grad = torch.randn_like(p)
    optimizer.step()
    state = optimizer.state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(10)  # e.g. another model's checkpoint
    optimizer.load_state_dict(state)
    with pytest.raises(RuntimeError):
        optimizer.step()
