"""A toy classification problem driven through mmengine's own train_step.

The model is an mmengine ``BaseModel``, so ``model.train_step(data, optim_wrapper)`` runs the
real path: data preprocessor, forward in loss mode, ``parse_losses``, ``update_params``.
"""
import torch
from mmengine.model import BaseModel
from torch import nn


def toy_data(n=256, features=16, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, features, generator=generator)
    teacher = torch.randn(features, classes, generator=generator)
    return dict(inputs=inputs, targets=(inputs @ teacher).argmax(1))


class ToyClassifier(BaseModel):
    def __init__(self, features=16, hidden=32, classes=4, bias=True):
        super().__init__()
        self.layer = nn.Linear(features, hidden, bias=bias)
        self.head = nn.Linear(hidden, classes, bias=bias)

    def forward(self, inputs, targets=None, mode="tensor"):
        logits = self.head(torch.relu(self.layer(inputs)))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, targets))
        return logits


class SparseBagClassifier(BaseModel):
    """Only a sparse EmbeddingBag: the model SparseAdam is for."""

    def __init__(self, vocab=64, classes=4):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, classes, mode="mean", sparse=True)

    def forward(self, inputs, targets=None, mode="tensor"):
        logits = self.bag(inputs)
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, targets))
        return logits


def sparse_toy_data(n=256, vocab=64, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, 6), generator=generator)
    return dict(inputs=tokens, targets=tokens[:, 0] % classes)


def toy_problem(name: str, seed: int = 0):
    """The model and data a given optimizer trains on in the sweep."""
    torch.manual_seed(seed)
    if name == "SparseAdam":
        return SparseBagClassifier(), sparse_toy_data(seed=seed)
    return ToyClassifier(bias=name != "TorchMuon"), toy_data(seed=seed)


class ToyMLP(BaseModel):
    """Input layer, two hidden matrices, a head: the smallest model with a Muon side."""

    def __init__(self, features=16, hidden=32, classes=4):
        super().__init__()
        self.stem = nn.Linear(features, hidden)
        self.blocks = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.LayerNorm(hidden),
                                    nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, inputs, targets=None, mode="tensor"):
        logits = self.head(self.blocks(torch.relu(self.stem(inputs))))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, targets))
        return logits
