"""A tiny classifier and dataset for the DeepSpeed jobs (registered into mmengine's root registries).

Small enough that a DeepSpeed step costs milliseconds on a 2-core CPU, but shaped like a vision
model: a stem conv that reads the input, a hidden conv, a norm, a hidden matrix and a head, so
Muon routing has something on each side.
"""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from torch import nn
from torch.utils.data import Dataset


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
