"""Hostile input to FlexibleRunner runs stops as it does for the plain Runner: exit 2, one
sentence naming the fix, no traceback, nothing the user had lost.

Every case runs ``visdet-mmext train``'s ``main`` (``tools/train.py``) in this process on the
package's configs for mmengine's real FlexibleRunner: ``zero2_offload_adamw`` (a real DeepSpeed
ZeRO-2 engine on CPU, gloo; the optimizer kept in torch so no DeepSpeed op is built) and
``fsdp_muon`` (the package's FullyShardStrategy, real FSDP2 on CPU). The checkpoints resumed or
damaged are the real ones a first run of each config wrote: a DeepSpeed checkpoint directory, an
FSDP2 checkpoint file.
"""
import os
import shutil
import subprocess
import sys
import uuid

import deepspeed  # noqa: F401  (its logger keeps the stdout of its import: the session's, not a test's)
import pytest
import torch

import visdet_mmext.demo  # noqa: F401
from damage import deep_lists
from demo_utils import CONFIGS, ROOT, TRAIN, subprocess_env
from visdet_mmext.checkpoint.deepspeed_layout import model_states_file
from visdet_mmext.runtime.work_dir_lock import WorkDirLock
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = {"deepspeed": os.path.join(CONFIGS, "deepspeed", "zero2_offload_adamw.py"),
          "fsdp": os.path.join(CONFIGS, "fsdp", "fsdp_muon.py")}
#: one epoch of two tiny batches; DeepSpeed's optimizer in torch (no op build)
SMALL = ["model.widths=(8,16,32)", "train_dataloader.dataset.num_train=16",
         "val_dataloader.dataset.num_val=8", "train_dataloader.batch_size=8",
         "train_cfg.max_epochs=1", "default_hooks.logger.interval=1",
         "default_hooks.checkpoint.max_keep_ckpts=-1"]
OPTIONS = {"deepspeed": [*SMALL, "strategy.zero_optimization.offload_optimizer.device=none"],
           "fsdp": SMALL}
BOTH = ["deepspeed", "fsdp"]


def _run(strategy, work_dir, capsys, *extra, config=None, options=()):
    # each run its own logger (runs of one config within a second would share one, and with it
    # the stdout of the test that made it)
    code = train_tool.main([config or CONFIG[strategy], "--work-dir", str(work_dir), *extra,
                            "--cfg-options", *OPTIONS[strategy], *options,
                            f"experiment_name=test_{uuid.uuid4().hex[:10]}"])
    out, err = capsys.readouterr()
    return code, out + err


def _refused(code, output, *expected, trained=False):
    assert code == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    if not trained:
        assert "Epoch(train)" not in output, output[-3000:]
    for words in expected:
        assert words in output, (words, output[-3000:])


def _config(tmp_path, strategy, body: str) -> str:
    path = tmp_path / f"{strategy}_child.py"
    path.write_text(f"_base_ = [{CONFIG[strategy]!r}]\n{body}\n")
    return str(path)


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory):
    """The work dirs of one real epoch of each config: ``epoch_1.pth`` (for DeepSpeed a
    directory of state files, for FSDP2 a file)."""
    runs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for strategy in BOTH:
            work_dir = tmp_path_factory.mktemp(f"{strategy}_run")
            assert train_tool.main([CONFIG[strategy], "--work-dir", str(work_dir),
                                    "--cfg-options", *OPTIONS[strategy]]) == 0
            runs[strategy] = work_dir
    finally:
        torch.set_num_threads(threads)
    assert (runs["deepspeed"] / "epoch_1.pth").is_dir()
    assert (runs["fsdp"] / "epoch_1.pth").is_file()
    return runs


# -- before anything is built: configs, flags, the work dir ---------------------------------------

@pytest.mark.parametrize("strategy", BOTH)
def test_decay_multipliers_without_weight_decay(tmp_path, capsys, strategy):
    body = ("optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3), "
            "paramwise_cfg=dict(bias_decay_mult=0.0))")
    code, output = _run(strategy, tmp_path / "work", capsys,
                        config=_config(tmp_path, strategy, body))
    _refused(code, output, "paramwise_cfg.bias_decay_mult=0.0 multiplies the optimizer's "
             "weight_decay, and optimizer=dict(type='AdamW', ...) sets none: add weight_decay=")


@pytest.mark.parametrize("strategy", BOTH)
def test_a_work_dir_in_use_is_refused_naming_the_flag(tmp_path, capsys, strategy):
    with WorkDirLock(str(tmp_path)):
        code, output = _run(strategy, tmp_path, capsys)
    _refused(code, output, "WorkDirInUseError", "another run is training into it",
             "--take-over-work-dir")
    assert not (tmp_path / "epoch_1.pth").exists()


@pytest.mark.parametrize("strategy", BOTH)
def test_resume_with_nothing_usable_in_the_work_dir(tmp_path, capsys, strategy):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "epoch_3.pth").write_bytes(b"")  # for DeepSpeed: a file, not a directory
    (work_dir / "last_checkpoint").write_text(str(tmp_path / "moved_away"))
    code, output = _run(strategy, work_dir, capsys, "--resume")
    _refused(code, output, f"no usable checkpoint in {work_dir}: 2 found, none usable",
             "moved_away")
    assert (work_dir / "epoch_3.pth").exists()  # nothing there was changed


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BOTH)
def test_resume_with_an_empty_work_dir_says_so_and_trains(tmp_path, capsys, strategy):
    code, output = _run(strategy, tmp_path / "work", capsys, "--resume")
    assert code == 0, output[-3000:]
    assert f"--resume: no checkpoint in {tmp_path / 'work'} yet; training from the start." in output


def test_resume_a_missing_checkpoint(tmp_path, capsys):
    code, output = _run("deepspeed", tmp_path / "work", capsys, "--resume",
                        str(tmp_path / "epoch_9.pth"))
    _refused(code, output, f"--resume {tmp_path / 'epoch_9.pth'}: no such file or directory")


# -- the checkpoint a first run wrote, resumed wrongly or damaged --------------------------------

KIND_MISMATCH = {
    "deepspeed": "a checkpoint file, and this run's DeepSpeed checkpoints are directories: resume "
                 "it with the config that wrote it, or start a new run from its weights",
    "fsdp": "a DeepSpeed checkpoint (a directory), and this run saves checkpoint files: resume it "
            "with the DeepSpeed config that wrote it, or start a new run from its weights",
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy, other", [("deepspeed", "fsdp"), ("fsdp", "deepspeed")])
def test_the_other_kind_of_checkpoint_is_not_resumed(first_runs, tmp_path, capsys, strategy,
                                                     other):
    checkpoint = first_runs[other] / "epoch_1.pth"
    code, output = _run(strategy, tmp_path / "work", capsys, "--resume", str(checkpoint))
    _refused(code, output, f"--resume {checkpoint}: {KIND_MISMATCH[strategy]}",
             f"--cfg-options load_from={checkpoint} (and no --resume)")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BOTH)
def test_another_models_checkpoint_stops_before_training(first_runs, tmp_path, capsys, strategy):
    checkpoint = first_runs[strategy] / "epoch_1.pth"
    code, output = _run(strategy, tmp_path / "work", capsys, "--resume", str(checkpoint),
                        options=["model.widths=(8,16,48)"])
    _refused(code, output, "CheckpointMismatchError", f"Checkpoint {checkpoint} was not saved "
             "from this model", "have another shape in it", "Nothing was loaded")


@pytest.mark.slow
def test_another_models_zero3_checkpoint_stops_before_training(tmp_path):
    """ZeRO-3's model states hold empty placeholders and the whole shapes beside them
    (``param_shapes``): a resume with another model still stops before training. In processes
    of their own: a ZeRO-3 engine replaces torch's ``F.linear`` for the rest of its process."""
    env = subprocess_env()
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    zero3 = os.path.join(CONFIGS, "deepspeed", "zero3_offload_param_adamw.py")
    options = [*OPTIONS["deepspeed"], "strategy.zero_optimization.offload_param.device=none"]

    def train(work_dir, *extra, more=()):
        return subprocess.run([sys.executable, TRAIN, zero3, "--work-dir", str(work_dir), *extra,
                               "--cfg-options", *options, *more], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    first = train(tmp_path / "first")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "first" / "epoch_1.pth"
    assert (checkpoint / "zero_pp_rank_0_mp_rank_00_model_states.pt").is_file()  # ZeRO-3's layout
    done = train(tmp_path / "work", "--resume", str(checkpoint), more=["model.widths=(8,16,48)"])
    _refused(done.returncode, done.stdout + done.stderr, "CheckpointMismatchError",
             f"Checkpoint {checkpoint} was not saved from this model", "have another shape in it",
             "Nothing was loaded")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BOTH)
def test_a_checkpoint_nested_too_deep_is_refused(first_runs, tmp_path, capsys, strategy):
    source = first_runs[strategy] / "epoch_1.pth"
    damaged = tmp_path / "epoch_1.pth"
    if strategy == "deepspeed":
        shutil.copytree(source, damaged)
        states = model_states_file(damaged)
        deep_lists(model_states_file(source), states)
    else:
        deep_lists(source, damaged)
    code, output = _run(strategy, tmp_path / "work", capsys, "--resume", str(damaged))
    _refused(code, output, "CorruptCheckpointError", "nested more than 100 deep")


@pytest.mark.slow
def test_a_weights_only_file_is_not_resumed(first_runs, tmp_path, capsys):
    from visdet_mmext.checkpoint.safe_load import safe_torch_load
    exported = tmp_path / "clean.pth"
    torch.save({"state_dict": safe_torch_load(first_runs["fsdp"] / "epoch_1.pth")["state_dict"]},
               exported)
    code, output = _run("fsdp", tmp_path / "work", capsys, "--resume", str(exported))
    _refused(code, output, f"--resume {exported}: it holds no training state (meta, "
             "message_hub missing)", f"--cfg-options load_from={exported} (and no --resume)")


@pytest.mark.parametrize("strategy", BOTH)
def test_an_empty_train_dataset_stops_before_training(tmp_path, capsys, strategy):
    code, output = _run(strategy, tmp_path / "work", capsys,
                        options=["train_dataloader.dataset.num_train=0"])
    _refused(code, output, "RunnerConfigError: train_dataloader yields no batch: its dataset "
             "(DemoShapes) holds no samples, so training would wait forever")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BOTH)
def test_a_failed_save_is_one_sentence(tmp_path, capsys, strategy):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    blocked = work_dir / "epoch_1.pth"
    if strategy == "deepspeed":
        blocked.write_text("not a directory")  # DeepSpeed saves a directory here
    else:
        blocked.mkdir()  # FSDP2 saves a file here
    code, output = _run(strategy, work_dir, capsys)
    reason = "Not a directory" if strategy == "deepspeed" else "Is a directory"
    _refused(code, output, f"CheckpointSaveError: Could not save checkpoint {blocked} ({reason}), "
             "so training stopped at epoch 1", "no earlier checkpoint of this run was saved",
             "continue with --resume and the same --work-dir", trained=True)
    assert blocked.is_file() if strategy == "deepspeed" else blocked.is_dir()  # left as it was


def _weights(checkpoint) -> dict:
    """The parameters a first run saved (DeepSpeed: its model states), BN statistics left out."""
    from visdet_mmext.checkpoint.safe_load import safe_torch_load
    if checkpoint.is_dir():
        state = safe_torch_load(model_states_file(checkpoint), deepspeed=True)["module"]
    else:
        state = safe_torch_load(checkpoint)["state_dict"]
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                              "num_batches_tracked"))}


FROZEN = {"deepspeed": ["optim_wrapper.optimizer.lr=0", "optim_wrapper.optimizer.weight_decay=0"],
          "fsdp": ["optim_wrapper.optimizer.lr=0", "optim_wrapper.optimizer.adamw_lr=0",
                   "optim_wrapper.optimizer.weight_decay=0",
                   "optim_wrapper.optimizer.adamw_weight_decay=0"]}


@pytest.mark.slow
@pytest.mark.parametrize("strategy, other", [("deepspeed", "fsdp"), ("fsdp", "deepspeed")])
def test_the_advice_for_the_other_kind_of_checkpoint_works(first_runs, tmp_path, capsys, strategy,
                                                           other):
    """The refusals above say: start a new run from its weights with load_from. Trained at lr 0,
    the new run saves exactly the weights it loaded."""
    checkpoint = first_runs[other] / "epoch_1.pth"
    code, output = _run(strategy, tmp_path / "work", capsys,
                        options=[f"load_from={checkpoint}", *FROZEN[strategy]])
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    loaded, saved = _weights(checkpoint), _weights(tmp_path / "work" / "epoch_1.pth")
    assert loaded.keys() == saved.keys()
    for name, value in loaded.items():
        assert torch.equal(value.float(), saved[name].float()), name


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BOTH)
def test_automatic_resume_skips_a_damaged_newest_checkpoint(first_runs, tmp_path, capsys,
                                                            strategy):
    """The same checks let this run's own intact checkpoint through, and it trains on."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    source = first_runs[strategy] / "epoch_1.pth"
    if strategy == "deepspeed":
        shutil.copytree(source, work_dir / "epoch_1.pth")
        shutil.copytree(source, work_dir / "epoch_5.pth")
        deep_lists(model_states_file(source), model_states_file(work_dir / "epoch_5.pth"))
    else:
        shutil.copy(source, work_dir / "epoch_1.pth")
        deep_lists(source, work_dir / "epoch_5.pth")
    code, output = _run(strategy, work_dir, capsys, "--resume", options=["train_cfg.max_epochs=2"])
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    skipped = [line for line in output.splitlines() if line.startswith("Skipped ")]
    assert len(skipped) == 1 and "epoch_5.pth" in skipped[0], skipped
    assert "nested more than 100 deep" in skipped[0]
    assert f"Resuming from {work_dir / 'epoch_1.pth'}" in output
    assert (work_dir / "epoch_2.pth").exists()
