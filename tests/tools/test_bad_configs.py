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
import torch

import visdet_mmext.demo  # noqa: F401
from demo_utils import CONFIGS, cli_options
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")
MUON = os.path.join(CONFIGS, "optimizers", "muon.py")
ZERO = os.path.join(CONFIGS, "deepspeed", "zero2_offload_adamw.py")
BASES = {"adamw": ADAMW, "muon": MUON, "zero": ZERO}

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
#: Round 2: numbers past a float, loops, types the Runner builds late, zero step sizes.
HOSTILE = [
    ("adamw", O("lr=10**400"), "lr=<an integer of about 401 digits> is too large"),
    ("adamw", O("weight_decay=-10**400"), "is too large"),
    ("adamw", O("betas=(0.9, 10**5000)"), "entry <an integer of about 5001 digits> is too large"),
    ("adamw", W("clip_grad=dict(max_norm=10**400)"), "max_norm=<an integer of about 401 digits>"),
    ("adamw", P("custom_keys={'head': dict(lr_mult=10**400)}"), "is too large"),
    ("adamw", W("optimizer=dict(lr=1e308), paramwise_cfg=dict(custom_keys={'head': "
                "dict(lr_mult=10.0)})"), "gets lr=inf"),
    ("adamw", O("type='" + "Adam" * 25000 + "'"), "characters]..."),
    ("adamw", "optim_wrapper = dict(optimizer=dict(_delete_=True, type='Prodigy', d_coef=0))",
     "d_coef=0 is out of range: expected > 0.0"),
    ("adamw", "optim_wrapper = dict(optimizer=dict(_delete_=True, type='Prodigy', d0=0.0))",
     "d0=0.0 is out of range: expected > 0.0"),
    ("adamw", "optim_wrapper = dict(optimizer=dict(_delete_=True, type='DAdaptAdam', d0=-1e-6))",
     "expected > 0.0"),
    ("muon", P("custom_keys={'bias': dict(use_muon=True)}"), "every parameter it reaches"),
    ("muon", P("custom_keys={'.bn.': dict(use_muon=True, lr_mult=0.5)}"), "use_muon=True"),
    ("adamw", "train_cfg = dict(_delete_=True, by_epoch=True, max_epochs=2, max_iters=5)",
     "EpochBasedTrainLoop counts epochs: use max_epochs"),
    ("adamw", "train_cfg = dict(max_epochs=3)", "IterBasedTrainLoop counts iterations: use max_iters"),
    ("adamw", "train_cfg = dict(val_intervl=5)", "Did you mean val_interval"),
    ("adamw", "train_cfg = dict(by_epoch=False)", "mmengine takes one of them"),
    ("adamw", "train_cfg = dict(_delete_=True, max_iters=3)", "or by_epoch=False/True"),
    ("adamw", "val_cfg = dict(fp16=True, foo=1)", "ValLoop has no setting 'foo'"),
    ("adamw", "randomness = dict(seed=2**40)", "from 0 to 4294967295"),
    ("adamw", "randomness = dict(seed=-1)", "from 0 to 4294967295"),
    ("adamw", "val_evaluator = dict(type='DemoAcuracy')", "Did you mean DemoAccuracy"),
    ("adamw", "visualizer = dict(type='Visualiser')", "Did you mean Visualizer"),
    ("adamw", "visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackand')])",
     "Did you mean LocalVisBackend"),
    ("adamw", "log_processor = dict(type='LogProcesor')", "Did you mean LogProcessor"),
    ("adamw", "train_dataloader = dict(sampler=dict(type='DefaultSamplr'))",
     "Did you mean DefaultSampler"),
    ("adamw", "train_dataloader = dict(collate_fn=dict(type='default_colate'))",
     "Did you mean default_collate"),
    ("adamw", "load_from = '/'", "is a directory"),
    ("adamw", "optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3), "
              "paramwise_cfg=dict(norm_decay_mult=0.0))",
     "paramwise_cfg.norm_decay_mult=0.0 multiplies the optimizer's weight_decay"),
    ("adamw", "optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3), "
              "paramwise_cfg=dict(custom_keys={'head': dict(decay_mult=0.5)}))",
     "custom_keys['head'].decay_mult=0.5 multiplies the optimizer's weight_decay"),
]
ZERO_CASES = [pytest.param(*case, marks=pytest.mark.deepspeed) for case in [
    ("zero", "strategy = dict(zero_optimization=dict(stage='two'))",
     "stage='two': ZeRO stages are the integers 0, 1, 2 and 3"),
    ("zero", "strategy = dict(zero_optimization=dict(stage=4))", "stage=4"),
    ("zero", "strategy = dict(zero_optimization=dict(stage=True))", "stage=True"),
    ("zero", "strategy = dict(zero_optimization=dict(offload_optimizer=dict(device='nvme')))",
     "offload_optimizer.device='nvme' needs nvme_path"),
    ("zero", "strategy = dict(zero_optimization=dict(stage=3, offload_param=dict(device='nvme')))",
     "offload_param.device='nvme' needs nvme_path"),
    ("zero", "strategy = dict(zero_optimization=dict(offload_optimizer='cpu'))", "must be a dict"),
]]
CASES = OPTIMIZER + VALUES + MUON_CASES + PARAMWISE + WRAPPER + HOOKS + RUNNER + HOSTILE
#: mistakes only where no CUDA device is: with one, these configs are good and train
CPU_ONLY = ("needs CUDA", "needs a GPU")
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the config trains")


def _config(tmp_path, base: str, lines: str) -> str:
    path = tmp_path / f"bad_{uuid.uuid4().hex[:8]}.py"
    path.write_text(f"_base_ = [{BASES[base]!r}]\n{lines}\n")
    return str(path)


#: The DeepSpeed demo counts epochs: made tiny without iteration settings.
ZERO_OPTIONS = ["train_cfg.max_epochs=1", "train_dataloader.batch_size=8",
                "train_dataloader.dataset.num_train=16", "val_dataloader.dataset.num_val=8"]


def _run(config, work_dir, capsys, *extra, options=None):
    code = train_tool.main([config, "--work-dir", str(work_dir), *extra, "--cfg-options",
                            *(options or cli_options(iters=2))])
    out, err = capsys.readouterr()
    logs = "".join(p.read_text() for p in work_dir.rglob("*.log")) if work_dir.exists() else ""
    return code, out + err + logs


def test_the_corpus_is_large_enough():
    assert len(CASES + ZERO_CASES) >= 138


@pytest.mark.parametrize("base, lines, expected",
                         [pytest.param(*c, marks=cpu_only) if c[2] in CPU_ONLY else c
                          for c in CASES] + ZERO_CASES,
                         ids=[c[1][14:74] for c in CASES] + [c.values[1][11:71] for c in ZERO_CASES])
def test_bad_config_stops_before_training(tmp_path, capsys, base, lines, expected):
    code, output = _run(_config(tmp_path, base, lines), tmp_path / "work", capsys,
                        options=ZERO_OPTIONS if base == "zero" else None)
    assert code == 2, output[-3000:]
    assert "Traceback" not in output
    assert "Iter(train)" not in output
    assert expected in output, output[-3000:]
    assert len(output) < 20000  # user input echoed shortened


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
    ("train_cfg.max_iters=1000000000000000000000000000000", "more than any run can reach"),
    ("train_dataloader.batch_size=1099511627776", "more than any run can reach"),
    ("val_dataloader.batch_size=-3", "must be a positive integer"),
    ("train_dataloader.dataset.num_train=0",
     "train_dataloader yields no batch: its dataset (DemoShapes) holds no samples"),
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


@pytest.mark.parametrize("files", [
    {"a.py": "_base_ = ['b.py']", "b.py": "_base_ = ['a.py']"},
    {"a.py": "_base_ = ['a.py']"},
    {"a.py": f"_base_ = [{ADAMW!r}, 'c/b.py']", "c/b.py": "_base_ = ['../a.py']"},
], ids=["two files", "itself", "through a folder"])
def test_base_cycles_are_named(tmp_path, capsys, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    code, output = _run(str(tmp_path / "a.py"), tmp_path / "work", capsys)
    assert code == 2 and "Traceback" not in output
    assert "its _base_ files include each other in a cycle: a.py -> " in output, output[-2000:]
    assert "Remove one of these _base_ entries" in output


@pytest.mark.parametrize("launcher, missing", [
    ("slurm", "SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST"),
    ("mpi", "OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE"),
    ("pytorch", "RANK, WORLD_SIZE"),
])
def test_launcher_without_its_scheduler_names_the_command(tmp_path, capsys, monkeypatch, launcher,
                                                         missing):
    for key in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST",
                "MASTER_ADDR", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    code, output = _run(ADAMW, tmp_path / "work", capsys, "--launcher", launcher)
    assert code == 2 and "Traceback" not in output
    assert f"--launcher {launcher} needs {missing}, which its scheduler sets" in output
    assert "leave --launcher out to train in one process" in output
    assert not (tmp_path / "work").exists()


def _said_before_training(log: str, words: str) -> set[str]:
    """The distinct messages containing ``words``, each logged before the first iteration."""
    lines = log.splitlines()
    first_iteration = next(i for i, line in enumerate(lines) if "Iter(train)" in line)
    found = [i for i, line in enumerate(lines) if words in line]
    assert found and all(i < first_iteration for i in found), log[-3000:]
    return {lines[i].split(" - ")[-1] for i in found}


@pytest.mark.parametrize("base, lines, words", [
    ("adamw", P("custom_keys={'': dict(lr_mult=0.0)}"), "has lr=0"),
    ("adamw", "custom_hooks = [dict(type='ScheduleFreeHook')]", "ScheduleFreeHook does nothing"),
    ("adamw", R("type='OnebitAdam', lr=1e-3"), "OnebitAdam in a single process"),
], ids=["all lr zero", "schedule-free hook, other optimizer", "1-bit alone"])
def test_a_config_that_trains_nothing_is_said_once_before_training(tmp_path, capsys, base, lines,
                                                                   words):
    code, output = _run(_config(tmp_path, base, lines), tmp_path / "work", capsys,
                        options=[*cli_options(iters=2), "log_level=INFO"])
    assert code == 0, output[-3000:]
    log = next((tmp_path / "work").rglob("*.log")).read_text()
    assert len(_said_before_training(log, words)) == 1, log[-3000:]  # one message, said early


def test_settings_whose_default_is_infinite_may_be_infinite(tmp_path, capsys):
    lines = R("type='Prodigy', lr=1.0, growth_rate=float('inf'), d_coef=0.5")
    code, output = _run(_config(tmp_path, "adamw", lines), tmp_path / "work", capsys)
    assert code == 0, output[-3000:]
