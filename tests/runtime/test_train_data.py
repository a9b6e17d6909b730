"""A train dataloader with no batch is named by why, read from the real loader's length."""
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from visdet_mmext.runtime.train_data import no_batch_reason


def _samples(count: int) -> TensorDataset:
    return TensorDataset(torch.zeros(count, 2))


def test_an_empty_dataset():
    assert no_batch_reason(DataLoader(_samples(0), batch_size=4)) == \
        "its dataset (TensorDataset) holds no samples"


def test_fewer_samples_than_a_batch_with_drop_last():
    assert no_batch_reason(DataLoader(_samples(3), batch_size=4, drop_last=True)) == \
        "with drop_last=True, the 3 samples of its dataset make no whole batch of batch_size=4 in " \
        "each process"


def test_a_loader_with_a_batch_or_without_a_length_is_not_judged():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(())

    assert no_batch_reason(DataLoader(_samples(3), batch_size=4)) is None
    assert no_batch_reason(DataLoader(Stream(), batch_size=4)) is None
