"""The tests' toy models and data (one home for all of them).

The models are mmengine ``BaseModel``s, so ``model.train_step(data, optim_wrapper)`` runs the
real path: data preprocessor, forward in loss mode, ``parse_losses``, ``update_params``.
``DSToyNet``/``DSToyDataset`` are registered into mmengine's root registries for configs (the
DeepSpeed jobs): a stem conv, a hidden conv, a norm, a hidden matrix and a head, so Muon
routing has something on each side, and a step costs milliseconds.
"""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from torch import nn
from torch.utils.data import Dataset


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

    @property
    def logits_module(self):  # SophiaG's Hessian estimate reads its output
        return self.head


class ToyBNClassifier(BaseModel):
    """ToyClassifier with a BatchNorm between its layers (schedule-free's BN recompute)."""

    def __init__(self, features=16, hidden=32, classes=4):
        super().__init__()
        self.layer = nn.Linear(features, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, inputs, targets=None, mode="tensor"):
        logits = self.head(torch.relu(self.norm(self.layer(inputs))))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, targets))
        if mode == "predict":
            return [dict(correct=bool(c)) for c in logits.argmax(1) == targets]
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


#: Optimizers that need another toy than the dense classifier with biases.
SPARSE_ONLY = frozenset({"SparseAdam"})  # steps only sparse gradients
MATRICES_ONLY = frozenset({"TorchMuon"})  # takes only 2-D parameters


def toy_problem(name: str, seed: int = 0):
    """The model and data a given optimizer trains on in the sweep."""
    torch.manual_seed(seed)
    if name in SPARSE_ONLY:
        return SparseBagClassifier(), sparse_toy_data(seed=seed)
    return ToyClassifier(bias=name not in MATRICES_ONLY), toy_data(seed=seed)


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


@MODELS.register_module(force=True)
class DSToyNet(BaseModel):

    def __init__(self, width: int = 16, hidden: int = 32, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.norm = nn.GroupNorm(4, width)
        self.fc = nn.Linear(width, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, inputs, labels=None, mode="tensor"):
        x = F.relu(self.stem(inputs))
        x = F.relu(self.norm(self.conv(x)))
        logits = self.head(F.relu(self.fc(x.mean(dim=(2, 3)))))
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, labels)}
        if mode == "predict":
            return logits.argmax(dim=1)
        return logits


@DATASETS.register_module(force=True)
class DSToyDataset(Dataset):
    """Random 3x8x8 images labelled by a fixed random teacher of their channel means.

    Learnable by the toy net (mean pooling sees exactly what the teacher sees) and the same
    for a given seed.
    """

    def __init__(self, size: int = 64, num_classes: int = 4, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(size, 3, 8, 8, generator=generator)
        self.images += torch.randn(size, 3, 1, 1, generator=generator)  # per-image colour
        teacher = torch.randn(3, num_classes, generator=generator)
        self.labels = (self.images.mean(dim=(2, 3)) @ teacher).argmax(dim=1)
        self.metainfo = {}

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"inputs": self.images[index], "labels": self.labels[index]}
