"""Small models shaped like the ones Muon routing must handle (OpenMMLab-style names)."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn


class ResNetLike(nn.Module):
    """Stem conv + BN, two residual-ish stages, global pool, fc classifier."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                    nn.ReLU(), nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.layer2 = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64),
                                    nn.ReLU())
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(torch.relu(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                                    nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32),
                                    nn.ReLU())

    def forward(self, x):
        c1 = self.stage1(self.stem(x))
        return c1, self.stage2(c1)


class FPN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lateral_convs = nn.ModuleList([nn.Conv2d(16, 16, 1), nn.Conv2d(32, 16, 1)])
        self.fpn_convs = nn.ModuleList([nn.Conv2d(16, 16, 3, padding=1) for _ in range(2)])

    def forward(self, feats):
        return [f(l(x)) for x, l, f in zip(feats, self.lateral_convs, self.fpn_convs)]


class RetinaLikeHead(nn.Module):
    def __init__(self, num_classes=3, anchors=2):
        super().__init__()
        self.cls_convs = nn.ModuleList([nn.Conv2d(16, 16, 3, padding=1)])
        self.reg_convs = nn.ModuleList([nn.Conv2d(16, 16, 3, padding=1)])
        self.retina_cls = nn.Conv2d(16, anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(16, anchors * 4, 3, padding=1)

    def forward(self, feats):
        return ([self.retina_cls(self.cls_convs[0](x)) for x in feats],
                [self.retina_reg(self.reg_convs[0](x)) for x in feats])


class RoIBoxHead(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.shared_fcs = nn.ModuleList([nn.Linear(16 * 4, 32), nn.Linear(32, 32)])
        self.fc_cls = nn.Linear(32, num_classes + 1)
        self.fc_reg = nn.Linear(32, num_classes * 4)


class DetectorLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.neck = FPN()
        self.bbox_head = RetinaLikeHead()
        self.roi_head = nn.Module()
        self.roi_head.bbox_head = RoIBoxHead()

    def forward(self, x):
        cls, reg = self.bbox_head(self.neck(self.backbone(x)))
        return sum(c.mean() for c in cls) + sum(r.mean() for r in reg)


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab=50, dim=16, length=8):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, length, dim))
        self.blocks = nn.ModuleList([Block(dim) for _ in range(2)])
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.token_embedding(tokens) + self.pos_embed[:, :tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm(x))


class MobileNetBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 32, 1)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.project = nn.Conv2d(32, 8, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.project(torch.relu(self.depthwise(torch.relu(self.expand(self.stem(x))))))
        return self.head(x.mean((2, 3)))


@MODELS.register_module(force=True)
class WideHeadConvNet(BaseModel):
    """An mmengine model for the demo's images whose classifier is as wide as its hidden layer:
    structure alone calls it hidden, the loss graph shows the loss reads it."""

    def __init__(self, width=16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2)
        self.hidden = nn.Conv2d(width, width, 3, stride=2)
        self.fc = nn.Linear(width, width)
        self.classifier = nn.Linear(width, width)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        features = torch.relu(self.hidden(torch.relu(self.stem(inputs)))).mean((2, 3))
        logits = self.classifier(torch.relu(self.fc(features)))
        if mode == "loss":
            return dict(loss=F.cross_entropy(logits, torch.as_tensor(data_samples).long()))
        return logits


class WideHeadClassifier(BaseModel):
    """toy.ToyClassifier with a hidden layer and a head as wide as it: structure alone puts the
    head on Muon, the loss graph moves it to AdamW at the first step."""

    def __init__(self, features=16, hidden=32):
        super().__init__()
        self.layer = nn.Linear(features, hidden)
        self.hidden = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, hidden)

    def forward(self, inputs, targets=None, mode="tensor"):
        logits = self.head(torch.relu(self.hidden(torch.relu(self.layer(inputs)))))
        if mode == "loss":
            return dict(loss=F.cross_entropy(logits, targets))
        return logits


class Gate(nn.Module):
    """Scales its first input and passes the second on: as a unit of its own under FSDP2, one
    autograd node carries both inputs, and only the first is on the auxiliary loss's path."""

    def __init__(self, width):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, queries, features):
        return queries * self.scale, features


class RefPointNet(BaseModel):
    """A detector-like net whose structural routing is wrong where the loss graph corrects it,
    for sharded training (no BatchNorm: its ranks' halves of a batch give the whole batch's
    gradients). ``ref_point`` predicts reference boxes, as Conditional DETR's and RT-DETR's
    decoders do outside any head; ``query_pos`` reads them, so structure sees their width read
    and calls the predictor hidden, while the box loss reads it directly. ``gate`` (an auxiliary
    loss reads its scaled queries) passes ``mix``'s features on to the classifier untouched.
    Uneven widths (33 and 7 rows over 2 ranks)."""

    def __init__(self, features=16, width=34, classes=7):
        super().__init__()
        self.stem = nn.Linear(features, 33)
        self.hidden = nn.Linear(33, width)
        self.pos = nn.Parameter(torch.zeros(1, width))  # a table, added to the features
        self.ref_point = nn.Linear(width, 4)
        self.query_pos = nn.Linear(4, width)
        self.mix = nn.Linear(width, width)
        self.gate = Gate(width)
        self.cls_hidden = nn.Linear(width, width)
        self.cls = nn.Linear(width, classes)

    def forward(self, inputs, labels=None, boxes=None, mode="tensor"):
        h = torch.relu(self.hidden(torch.relu(self.stem(inputs)))) + self.pos
        ref = self.ref_point(h).sigmoid()
        queries, features = self.gate(torch.relu(self.query_pos(ref)), torch.relu(self.mix(h)))
        logits = self.cls(torch.relu(self.cls_hidden(features)))
        if mode != "loss":
            return logits
        return dict(loss_cls=F.cross_entropy(logits, labels), loss_box=F.l1_loss(ref, boxes),
                    loss_aux=1e-2 * queries.square().mean())


def ref_point_data(n=24, features=16, classes=7, seed=0) -> dict:
    """Inputs, labels and boxes for RefPointNet (as a DictDataset's columns)."""
    generator = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randn(n, features, generator=generator),
                labels=torch.randint(0, classes, (n,), generator=generator),
                boxes=torch.rand(n, 4, generator=generator))
