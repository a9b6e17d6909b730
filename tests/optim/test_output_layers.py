"""The structural output-layer rule's edge cases, and the warnings that catch the rest."""
import logging

from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from torch import nn

from visdet_mmext.optim.routing import MuonRules, route_parameters


class KeypointHead(nn.Module):
    """A 4-wide offset predictor whose output a refinement layer reads back."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Linear(32, 4)
        self.refine = nn.Linear(4, 32)


class ClsHead(nn.Module):
    """64 classes at width 64: widths cannot tell the predictor from a hidden layer."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(64, 64)
        self.fc_cls = nn.Linear(64, 64)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)  # a generic name inside a backbone
        self.gate = nn.Linear(16, 2)  # read by no layer: a likely predictor outside the head


class Detector(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.proj = nn.Linear(16, 32 if isinstance(head, KeypointHead) else 64)
        self.head = head


def _warnings_naming(routing, text):
    return [w for w in routing.warnings if text in w]


def test_few_rows_inside_a_head_warn_with_the_pattern_that_moves_them():
    routing = route_parameters(Detector(KeypointHead()))
    offset = routing.by_name()["head.offset.weight"]
    assert offset.use_muon and "read by head.refine" in offset.reason
    [warning] = _warnings_naming(routing, "head.offset.weight")
    assert "only 4 rows inside KeypointHead 'head'" in warning
    assert warning.endswith("exclude=['head.offset.weight']")


def test_outputs_nothing_reads_warn_once_per_pattern_and_the_pattern_fixes_them():
    routing = route_parameters(Detector(KeypointHead()))
    [warning] = _warnings_naming(routing, "gate")
    assert warning.startswith("blocks.*.gate.weight (3 tensors 2x16) is routed to Muon")
    assert "no layer of the model reads its output (width 2)" in warning
    moved = route_parameters(Detector(KeypointHead()), MuonRules(exclude=("blocks.*.gate.weight",)))
    assert not _warnings_naming(moved, "gate")
    assert [moved.by_name()[f"blocks.{i}.gate.weight"].side for i in range(3)] == ["AdamW"] * 3
    assert moved.by_name()["blocks.0.fc.weight"].side == "Muon"  # the generic name is no head


def test_tensors_placed_by_user_rules_are_not_warned_about():
    routing = route_parameters(Detector(KeypointHead()), MuonRules(include=("head.offset.*",)))
    assert routing.by_name()["head.offset.weight"].reason == "include 'head.offset.*'"
    assert not _warnings_naming(routing, "head.offset")


def test_a_predictor_name_settles_what_widths_cannot():
    by_name = route_parameters(Detector(ClsHead())).by_name()
    assert by_name["head.fc_cls.weight"].side == "AdamW"
    assert "named 'fc_cls'" in by_name["head.fc_cls.weight"].reason
    assert by_name["head.shared.weight"].side == "Muon"


def test_generic_names_count_only_where_structure_says_output():
    model = Detector(ClsHead())
    assert route_parameters(model).by_name()["blocks.0.fc.weight"].side == "Muon"
    assert route_parameters(model, MuonRules(heads=("fc",))).by_name()[
        "blocks.0.fc.weight"].side == "AdamW"  # a user's name list still applies anywhere


def test_a_sequential_chain_decides_before_widths():
    head = nn.Sequential(nn.Conv2d(16, 8, 3), nn.Flatten(), nn.Linear(8 * 9, 5))
    head.__class__ = type("ChainHead", (nn.Sequential,), {})
    model = nn.Module()
    model.stem, model.head = nn.Conv2d(3, 16, 3), head
    by_name = route_parameters(model).by_name()
    assert "followed by head.2 in a Sequential" in by_name["head.0.weight"].reason
    assert "last layer of its branch in ChainHead 'head'" in by_name["head.2.weight"].reason


def test_constructor_logs_the_warnings():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        build_optim_wrapper(Detector(KeypointHead()), dict(
            optimizer=dict(type="Muon", lr=0.02), constructor="VisdetOptimWrapperConstructor"))
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(m.startswith("Muon routing: blocks.*.gate.weight") for m in messages), messages
    assert any(m.startswith("Muon routing: head.offset.weight") for m in messages), messages


def test_a_warning_lists_names_where_one_glob_would_move_more():
    model = Detector(KeypointHead())
    model.blocks[1].gate = nn.Linear(16, 3)
    warnings = _warnings_naming(route_parameters(model), "gate")
    assert len(warnings) == 2
    assert "add exclude=['blocks.0.gate.weight', 'blocks.2.gate.weight']" in warnings[0]
    assert warnings[1].endswith("add exclude=['blocks.1.gate.weight']")
    excluded = ("blocks.0.gate.weight", "blocks.2.gate.weight", "blocks.1.gate.weight")
    assert not _warnings_naming(route_parameters(model, MuonRules(exclude=excluded)), "gate")


def test_a_classifier_removed_from_a_timm_backbone_is_no_head():
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Identity())
    backbone.pretrained_cfg = {"classifier": "2"}  # timm with num_classes=0: Identity classifier
    model = nn.Module()
    model.backbone, model.fc = backbone, nn.Linear(8, 10)
    route = route_parameters(model).by_name()["fc.weight"]
    assert route.side == "AdamW" and "the model's last layer" in route.reason
