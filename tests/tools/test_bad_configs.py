"""A corpus of bad configs: each stops before training with exit code 2, no traceback, the fix named.

Every case is a real config file (a demo config plus one mistake, in mmengine's merge syntax) run
through
``visdet-mmext train``'s ``main`` (``tools/train.py`` in a checkout) in this process. Most fail in the checks before the runner is
built; the rest (adapters, routing, resume mismatches) when the optim wrapper is built or the
checkpoint loads, still before the first iteration.
"""
import os
import uuid

import pytest

import visdet_mmext.demo  # noqa: F401
from demo_utils import CONFIGS, cli_options
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")
MUON = os.path.join(CONFIGS, "optimizers", "muon.py")

def O(settings: str) -> str:
    """Change optimizer settings (merged into the base config's optimizer)."""
    return f"optim_wrapper = dict(optimizer=dict({settings}))"


def R(settings: str) -> str:
    """Replace the optimizer."""
    return f"optim_wrapper = dict(optimizer=dict(_delete_=True, {settings}))"


def W(settings: str) -> str:
    """Change optim_wrapper settings."""
    return f"optim_wrapper = dict({settings})"


def P(settings: str) -> str:
    """Set paramwise_cfg."""
    return f"optim_wrapper = dict(paramwise_cfg=dict({settings}))"


#: Muon's optim_wrapper without the package's constructor (mmengine's default then builds it).
MUON_DEFAULT = ("optim_wrapper = dict(_delete_=True, type='OptimWrapper', "
                "optimizer=dict(type='Muon', lr=0.05){})")

#: (base config, child config body, text the message must contain)
OPTIMIZER = [
    ("adamw", O("type='AdamWW'"), "Closest available names: AdamW"),
    ("adamw", O("type='adamw'"), "Closest available names: AdamW"),
    ("adamw", O("type='AdamW8bitt'"), "AdamW8bit"),
    ("adamw", O("type=None"), "registered name or a class"),
    ("adamw", O("type=42"), "registered name or a class"),
    ("adamw", R("lr=0.1"), "a 'type' key"),
    ("adamw", W("optimizer='AdamW'"), "a 'type' key"),
    ("adamw", "optim_wrapper = dict(_delete_=True, type='OptimWrapper')", "needs an 'optimizer' dict"),
    ("adamw", "optim_wrapper = None", "has no optim_wrapper"),
    ("adamw", R("type='FusedLamb', lr=1e-3"), "needs CUDA"),
    ("adamw", R("type='AdEMAMix32bit', lr=1e-3"), "needs CUDA"),
    ("adamw", R("type='SparseAdam', lr=1e-3"), "sparse"),
]
VALUES = [
    ("adamw", O("lr=float('inf')"), "must be finite"),
    ("adamw", O("lr=float('nan')"), "must be finite"),
    ("adamw", O("lr=True"), "True/False are not numbers"),
    ("adamw", O("lr=-1e-3"), "expected >= 0"),
    ("adamw", O("lr='0.01'"), "must be a number"),
    ("adamw", O("lr=[0.1]"), "must be a number"),
    ("adamw", O("weight_decay=-0.1"), "expected >= 0"),
    ("adamw", O("eps=-1e-8"), "expected >= 0"),
    ("adamw", O("eps=True"), "True/False are not numbers"),
    ("adamw", O("betas=(0.9,)"), "tuple of 2 numbers"),
    ("adamw", O("betas=(0.9, 0.999, 0.9)"), "tuple of 2 numbers"),
    ("adamw", O("betas=(0.9, 1.5)"), "entry 1.5 is out of range"),
    ("adamw", O("betas=0.9"), "tuple of 2 numbers"),
    ("adamw", O("betas=(True, 0.999)"), "True/False are not numbers"),
    ("adamw", O("betas=('0.9', 0.999)"), "must be a number"),
    ("adamw", O("amsgrad=1"), "must be True or False"),
    ("adamw", O("foreach='yes'"), "must be True or False"),
    ("adamw", O("momentum=0.9"), "AdamW has no setting 'momentum'"),
    ("adamw", O("weight_decy=0.01"), "Did you mean weight_decay"),
    ("adamw", R("type='SGD', lr=0.1, momentum=1.5"), "<= 1.0"),
    ("adamw", R("type='SGD', lr=0.1, momentum=-0.1"), ">= 0"),
    ("adamw", R("type='SGD', lr=0.1, nesterov='yes'"), "True or False"),
    ("adamw", R("type='SGD', lr=0.1, dampening='x'"), "a number"),
    ("adamw", R("type='LBFGS', max_iter=0"), "max_iter=0"),
    ("adamw", R("type='LBFGS', max_iter=2.5"), "an integer"),
    ("adamw", R("type='LBFGS', history_size=-1"), ">= 1"),
    ("adamw", R("type='AdamW8bit', min_8bit_size='4096'"), "an integer"),
    ("adamw", R("type='AdamW8bit', min_8bit_size=-1"), ">= 0"),
    ("adamw", R("type='Lion', weight_decay=float('inf')"), "finite"),
    ("adamw", R("type='LAMB', betas=(0.9,)"), "tuple of 2"),
    ("adamw", R("type='LAMB', adapt='no'"), "True or False"),
    ("adamw", R("type='AdEMAMix', betas=(0.9, 0.999)"), "tuple of 3"),
    ("adamw", R("type='Adafactor', lr=0.01"), "relative_step"),
    ("adamw", R("type='Adafactor', relative_step=False"), "numeric lr"),
    ("adamw", W("optimizer=dict(_delete_=True, type='DAdaptSGD', lr=1.0), "
                "paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=0.1)})"), "use DAdaptAdam"),
]
MUON_CASES = [
    ("muon", O("adamw_lr=-5e-3"), "adamw_lr=-0.005 is out of range"),
    ("muon", O("adamw_eps=-1.0"), "adamw_eps=-1.0 is out of range"),
    ("muon", O("adamw_weight_decay=-0.1"), "adamw_weight_decay=-0.1"),
    ("muon", O("adamw_betas=(0.9, 1.5)"), "entry 1.5 is out of range"),
    ("muon", O("adamw_betas=(0.9,)"), "tuple of 2"),
    ("muon", O("ns_steps=0"), "ns_steps=0 is out of range"),
    ("muon", O("ns_steps=2.5"), "an integer"),
    ("muon", O("ns_steps=True"), "True/False are not numbers"),
    ("muon", O("momentum=1.0"), "momentum"),
    ("muon", O("adjust_lr='rms'"), "adjust_lr must be one of"),
    ("muon", O("nesterov='no'"), "True or False"),
    ("muon", P("custom_keys={'head': dict(use_muon='no')}"), "use_muon='no' must be True or False"),
    ("muon", P("custom_keys={'head': dict(use_muon=1)}"), "must be True or False"),
    ("muon", P("muon=dict(includ=['*'])"), "unknown keys"),
    ("muon", MUON_DEFAULT.format(", paramwise_cfg=dict(muon=dict(exclude=['head.*']))"),
     "constructor='VisdetOptimWrapperConstructor'"),
    ("muon", P("custom_keys={'layers': dict(use_muon=True)}, muon=dict(exclude=['layers.*'])"),
     "contradictory Muon routing rules"),
    ("adamw", W("constructor='VisdetOptimWrapperConstructor', "
                "paramwise_cfg=dict(muon=dict(exclude=['head.*']))"),
     "only apply to optimizer type 'Muon'"),
    ("adamw", O("adamw_lr=1e-3"), "AdamW has no setting 'adamw_lr'"),
]
PARAMWISE = [
    ("adamw", P("bias_lr_mul=2.0"), "Did you mean bias_lr_mult"),
    ("adamw", P("norm_decay_mult=-1"), "expected >= 0"),
    ("adamw", P("bias_decay_mult=float('nan')"), "finite"),
    ("adamw", P("dwconv_decay_mult='0'"), "a number"),
    ("adamw", P("flat_decay_mult=True"), "not numbers"),
    ("adamw", P("bypass_duplicate='yes'"), "True or False"),
    ("adamw", P("custom_keys={'head': dict(lr_mult=-1)}"), ">= 0"),
    ("adamw", P("custom_keys={'head': dict(decay_mult=-1)}"), ">= 0"),
    ("adamw", P("custom_keys={'head': 0.1}"), "must be a dict"),
    ("adamw", P("custom_keys={'head': dict(lr_mul=0.1)}"), "Did you mean lr_mult"),
    ("adamw", P("custom_keys=['head']"), "must be a dict"),
    ("adamw", P("custom_keys={'head': dict(betas=(0.9,))}"), "tuple of 2"),
    ("adamw", P("custom_keys={'head': dict(lr_mult=True)}"), "not numbers"),
    ("adamw", W("paramwise_cfg=0.1"), "paramwise_cfg must be a dict"),
]
WRAPPER = [
    ("adamw", W("type='OptimWraper'"), "Did you mean OptimWrapper"),
    ("adamw", W("constructor='VisdetOptimWrapperConstrutor'"),
     "Did you mean VisdetOptimWrapperConstructor"),
    ("adamw", W("clip_grad=dict(max_nrom=1)"), "Did you mean max_norm"),
    ("adamw", W("clip_grad=dict(max_norm=-1)"), ">= 0"),
    ("adamw", W("clip_grad=dict(type='value')"), "needs clip_value"),
    ("adamw", W("clip_grad=dict(type='norml', max_norm=1)"), "use 'norm' or 'value'"),
    ("adamw", W("clip_grad=1.0"), "must be a dict"),
    ("adamw", W("accumulative_counts=0"), "accumulative_counts=0"),
    ("adamw", W("accumulative_counts=2.5"), "an integer"),
    ("adamw", W("accumulative_counts=True"), "not numbers"),
    ("adamw", W("lossscale='dynamic'"), "has no setting 'lossscale'"),
    ("adamw", W("type='AmpOptimWrapper'"), "needs a GPU"),
]
HOOKS = [
    ("adamw", "custom_hooks = [dict(type='ScheduleFreHook')]", "Did you mean ScheduleFreeHook"),
    ("adamw", "default_hooks = dict(logger=dict(type='LogerHook'))", "Did you mean LoggerHook"),
    ("adamw", "custom_hooks = [dict(bn_batches=3)]", "has no 'type'"),
    ("adamw", "custom_hooks = [dict(type='ScheduleFreeHook', bn_batches=-1)]", "integer >= 0"),
    ("adamw", "custom_hooks = [dict(type='CpuThreadsHook', threads=0)]", "positive int or 'auto'"),
    # what --cfg-options custom_hooks=[dict(type='ScheduleFreeHook')] reads: a list of one string
    ("adamw", "custom_hooks = [\"dict(type='ScheduleFreeHook')\"]", "must be a dict"),
]
RUNNER = [
    ("adamw", "model = dict(type='DemoConvNett')", "Did you mean DemoConvNet"),
    ("adamw", "param_scheduler = [dict(type='CosineAnnealingLRR', T_max=9, by_epoch=False)]",
     "Did you mean CosineAnnealingLR"),
    ("adamw", "param_scheduler = [dict(by_epoch=False, T_max=9)]", "has no 'type'"),
    ("adamw", "param_scheduler = [dict(type='LinearLR', start_factor=0, by_epoch=False, end=5)]",
     "start_factor=0 must be > 0"),
    ("adamw", "train_dataloader = dict(dataset=dict(type='DemoShape'))", "Did you mean DemoShapes"),
    ("adamw", "train_cfg = dict(_delete_=True, type='IterBasedTrainLop', max_iters=3)",
     "Did you mean IterBasedTrainLoop"),
    ("adamw", "load_from = '/nonexistent/iter_5.pth'", "load_from='/nonexistent/iter_5.pth': no such file"),
    ("adamw", "x = (", "line 2: '(' was never closed"),
    ("adamw", "param_scheduler = dict(type='MultiStepLR', milestones=[5], by_epoch=False)",
     "_delete_=True"),
    ("adamw", "lr = base_lr * 2", "NameError: name 'base_lr' is not defined"),
]
CASES = OPTIMIZER + VALUES + MUON_CASES + PARAMWISE + WRAPPER + HOOKS + RUNNER


def _config(tmp_path, base: str, lines: str) -> str:
    path = tmp_path / f"bad_{uuid.uuid4().hex[:8]}.py"
    path.write_text(f"_base_ = [{ {'adamw': ADAMW, 'muon': MUON}[base]!r}]\n{lines}\n")
    return str(path)


def _run(config, work_dir, capsys, *extra):
    code = train_tool.main([config, "--work-dir", str(work_dir), *extra, "--cfg-options",
                            *cli_options(iters=2)])
    out, err = capsys.readouterr()
    logs = "".join(p.read_text() for p in work_dir.rglob("*.log")) if work_dir.exists() else ""
    return code, out + err + logs


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 80


@pytest.mark.parametrize("base, lines, expected", CASES, ids=[c[1][14:74] for c in CASES])
def test_bad_config_stops_before_training(tmp_path, capsys, base, lines, expected):
    code, output = _run(_config(tmp_path, base, lines), tmp_path / "work", capsys)
    assert code == 2, output[-3000:]
    assert "Traceback" not in output
    assert "Iter(train)" not in output
    assert expected in output, output[-3000:]


@pytest.mark.parametrize("option", ["custom_hooks=[dict(type='ScheduleFreeHook',bn_batches=9)]",
                                    "train_cfg.max_iters", "a=[1,2"])
def test_unreadable_cfg_options_are_a_usage_error(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as stopped:
        train_tool.main([ADAMW, "--work-dir", str(tmp_path), "--cfg-options", option])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"--cfg-options could not read {option!r}" in err
    assert "in a config file that starts with _base_" in err


@pytest.mark.parametrize("option, expected", [
    ("train_cfg.max_iters=-1", "train_cfg.max_iters=-1 must be a positive integer"),
    ("train_cfg.val_interval=0", "train_cfg.val_interval=0 must be a positive integer"),
    ("work_dir=/proc/visdet_mmext_cannot_be_here", "cannot be created"),
    ("train_dataloader.batch_size=0", "train_dataloader.batch_size=0 must be a positive integer"),
    ("auto_scale_lr.base_batch_size=0", "auto_scale_lr.base_batch_size=0 must be a positive"),
    ("randomness.seed=abc", "randomness.seed='abc' must be an integer"),
])
def test_run_settings_that_would_train_nothing_or_fail_later(tmp_path, capsys, option, expected):
    code = train_tool.main([ADAMW, "--cfg-options", *cli_options(iters=2),
                            f"work_dir={tmp_path / 'work'}", option])
    output = "".join(capsys.readouterr())
    assert code == 2, output[-3000:]
    assert "Traceback" not in output
    assert "Iter(train)" not in output
    assert expected in output, output[-3000:]


@pytest.fixture(scope="module")
def muon_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("muon_run")
    assert train_tool.main([MUON, "--work-dir", str(work_dir), "--cfg-options",
                            *cli_options(iters=2)]) == 0
    return work_dir / "iter_2.pth"


RESUME_MISMATCHES = [
    ("muon", "optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW', lr=1e-3))",
     "written by visdet_mmext.algorithms.muon"),
    ("muon", P("muon=dict(exclude=['layers.*'])"), "(Muon) -> now"),
    ("muon", MUON_DEFAULT.format(""), "Parameters that moved"),
    ("muon", "model = dict(widths=(32, 64, 96))", "was not saved from this model"),
]


@pytest.mark.parametrize("base, lines, expected", RESUME_MISMATCHES,
                         ids=["optimizer switch", "routing change", "constructor switch", "model"])
def test_resume_mismatch_stops_with_what_moved(tmp_path, capsys, muon_checkpoint, base, lines,
                                               expected):
    code, output = _run(_config(tmp_path, base, lines), tmp_path / "work", capsys,
                        "--resume", str(muon_checkpoint))
    assert code == 2, output[-3000:]
    assert "CheckpointMismatchError" in output and expected in output, output[-3000:]
    assert "Traceback" not in output and "Iter(train)" not in output
