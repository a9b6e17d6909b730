"""The structural output-layer rule's edge cases, and the doubts it reports where no loss graph
will settle them."""
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
        self.gate = nn.Linear(16, 2)  # read by no layer: an output of the model


class Detector(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.proj = nn.Linear(16, 32 if isinstance(head, KeypointHead) else 64)
        self.head = head


def _doubts_naming(routing, text):
    return [w for w in routing.doubts if text in w]


def test_few_rows_inside_a_head_are_doubted_with_the_pattern_that_moves_them():
    routing = route_parameters(Detector(KeypointHead()))
    offset = routing.by_name()["head.offset.weight"]
    assert offset.use_muon and "read by head.refine" in offset.reason
    [doubt] = _doubts_naming(routing, "head.offset.weight")
    assert "only 4 rows inside KeypointHead 'head'" in doubt
    assert doubt.endswith("exclude=['head.offset.weight']")
    assert not routing.warnings  # doubts are not the rules' problems


def test_outputs_nothing_reads_go_to_adamw_and_an_include_takes_them_back():
    routing = route_parameters(Detector(KeypointHead()))
    gates = [routing.by_name()[f"blocks.{i}.gate.weight"] for i in range(3)]
    assert [gate.side for gate in gates] == ["AdamW"] * 3
    assert gates[0].reason == "output of the model: no layer reads its 2-wide output"
    assert routing.by_name()["blocks.0.fc.weight"].side == "Muon"  # the generic name is no head
    kept = route_parameters(Detector(KeypointHead()), MuonRules(include=("blocks.*.gate.weight",)))
    assert [kept.by_name()[f"blocks.{i}.gate.weight"].side for i in range(3)] == ["Muon"] * 3


def test_an_intermediate_result_is_no_output():
    """Deformable attention's offsets: read by no layer, but a later layer of the same module
    writes what the model uses."""
    model = nn.Module()
    model.stem = nn.Linear(8, 16)
    model.attention = nn.Module()
    model.attention.sampling_offsets = nn.Linear(16, 6)
    model.attention.output_proj = nn.Linear(16, 16)
    model.head = nn.Linear(16, 3)
    route = route_parameters(model).by_name()["attention.sampling_offsets.weight"]
    assert route.side == "Muon"
    assert "intermediate result: attention.output_proj follows it" in route.reason


def test_tensors_placed_by_user_rules_are_not_doubted():
    routing = route_parameters(Detector(KeypointHead()), MuonRules(include=("head.offset.*",)))
    assert routing.by_name()["head.offset.weight"].reason == "include 'head.offset.*'"
    assert not _doubts_naming(routing, "head.offset")


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


def _logged_warnings(wrapper_type="OptimWrapper"):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        build_optim_wrapper(Detector(KeypointHead()), dict(
            type=wrapper_type, optimizer=dict(type="Muon", lr=0.02),
            constructor="VisdetOptimWrapperConstructor", paramwise_cfg=dict(
                muon=dict(exclude=["head.ofset*"]))))
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


def test_constructor_logs_warnings_and_leaves_doubts_to_the_loss_graph():
    messages = _logged_warnings()
    assert any("'head.ofset*' matches no parameter" in m for m in messages), messages
    assert not any("head.offset.weight" in m and "rows" in m for m in messages), messages


def test_a_doubt_lists_names_where_one_glob_would_move_more():
    model = Detector(KeypointHead())
    model.head.offsets = nn.ModuleList([nn.Linear(32, 4), nn.Linear(16, 4), nn.Linear(32, 4)])
    doubts = _doubts_naming(route_parameters(model), "offsets")
    assert len(doubts) == 2
    assert "add exclude=['head.offsets.0.weight', 'head.offsets.2.weight']" in doubts[0]
    assert doubts[1].endswith("add exclude=['head.offsets.1.weight']")


def test_a_classifier_removed_from_a_timm_backbone_is_no_head():
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Identity())
    backbone.pretrained_cfg = {"classifier": "2"}  # timm with num_classes=0: Identity classifier
    model = nn.Module()
    model.backbone, model.fc = backbone, nn.Linear(8, 10)
    route = route_parameters(model).by_name()["fc.weight"]
    assert route.side == "AdamW" and "no layer reads its 10-wide output" in route.reason
