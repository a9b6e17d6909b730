"""Resume and load_from with weights-only loading kept on; malicious checkpoints refused."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

import visdet_mmext.demo  # noqa: F401
from jobs.demo_utils import ROOT, assert_same_tensors, state_of, subprocess_env, tiny_cfg
from visdet_mmext.engine import UnsafeCheckpointError, safe_checkpoint

safe_checkpoint.install()

pytestmark = pytest.mark.usefixtures("one_thread")


def _runner(work_dir, **kwargs):
    from mmengine.runner import Runner
    cfg = tiny_cfg("configs/optimizers/adamw.py", work_dir, **kwargs)
    return Runner.from_cfg(cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted 12-iteration run with checkpoints every 6 iterations."""
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    _runner(work_dir, iters=12, checkpoint_interval=6).train()
    return work_dir


class _Payload:
    """Pickles as a call to ``function(*args)``, the classic checkpoint attack."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _malicious_checkpoint(path, payload, clean_from):
    checkpoint = state_of(str(clean_from))
    checkpoint["meta"]["note"] = payload
    torch.save(checkpoint, path)
    return path


def test_installed_for_local_and_http_paths():
    from mmengine.runner import checkpoint as ckpt
    schemes = ckpt.CheckpointLoader._schemes
    assert schemes[""] is safe_checkpoint.load_from_local
    assert schemes["https://"] is schemes["http://"] is safe_checkpoint.load_from_http
    assert ckpt.load_from_http is safe_checkpoint.load_from_http  # torchvision://, mmcls://
    assert all(getattr(loader, "_visdet_safe", False) for loader in schemes.values())


def test_mmengine_checkpoints_need_more_than_torch_default(trained):
    """The problem is real: plain weights-only loading refuses an mmengine checkpoint."""
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trained / "iter_12.pth", weights_only=True)
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(trained / "iter_12.pth"))
    assert "mmengine.logging.history_buffer.HistoryBuffer" in names
    allowed = set(safe_checkpoint.allowed_names())
    assert set(names) <= allowed, set(names) - allowed


def test_loads_real_checkpoint_without_widening_torch_allowlist(trained):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    before = set(torch.serialization.get_safe_globals())
    checkpoint = _load_checkpoint(str(trained / "iter_12.pth"), map_location="cpu")
    assert set(torch.serialization.get_safe_globals()) == before
    assert checkpoint["meta"]["iter"] == 12
    assert isinstance(checkpoint["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
    assert len(checkpoint["message_hub"]["log_scalars"]["train/loss"].data[0]) > 0


def test_resume_continues_at_the_right_iteration_with_identical_results(trained, tmp_path):
    from mmengine.hooks import Hook

    class FirstIter(Hook):
        seen = []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.seen.append(runner.iter)

    runner = _runner(tmp_path, iters=12, checkpoint_interval=6)
    runner._load_from, runner._resume = str(trained / "iter_6.pth"), True
    recorder = FirstIter()
    runner.register_hook(recorder)
    runner.train()
    assert recorder.seen[0] == 6 and recorder.seen[-1] == 11
    resumed, uninterrupted = state_of(tmp_path / "iter_12.pth"), state_of(trained / "iter_12.pth")
    for part in ("state_dict", "optimizer", "param_schedulers"):
        assert_same_tensors(resumed[part], uninterrupted[part], part)
    assert resumed["meta"]["iter"] == 12


def test_load_from_takes_weights_only(trained, tmp_path):
    runner = _runner(tmp_path, iters=1)
    runner._load_from = str(trained / "iter_12.pth")
    runner.train()  # loads (weights only, not the optimizer) and trains one iteration


@pytest.mark.parametrize("payload_kind", ["os.system", "eval", "getattr"])
def test_malicious_checkpoint_is_refused_without_running_it(trained, tmp_path, payload_kind):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    marker = tmp_path / "pwned"
    payload, named = {
        "os.system": (_Payload(os.system, f"touch {marker}"), "system"),
        "eval": (_Payload(eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        # getattr is allowed only for HistoryBuffer's statistics methods
        "getattr": (_Payload(getattr, HistoryBuffer, "register_statistics"),
                    "getattr(HistoryBuffer, 'register_statistics')"),
    }[payload_kind]
    path = _malicious_checkpoint(tmp_path / "evil.pth", payload, trained / "iter_6.pth")
    with pytest.raises(UnsafeCheckpointError) as error:
        _load_checkpoint(str(path), map_location="cpu")
    message = str(error.value)
    assert named in message and "evil.pth" in message
    assert "outside the objects mmengine checkpoints contain" in message
    assert "weights_only=False" in message  # how to proceed when the file is trusted
    assert not marker.exists()


def test_numpy_object_arrays_are_refused(trained, tmp_path):
    import numpy as np
    checkpoint = state_of(str(trained / "iter_6.pth"))
    checkpoint["meta"]["note"] = np.array([{"a": 1}, None], dtype=object)
    torch.save(checkpoint, tmp_path / "objects.pth")
    with pytest.raises(UnsafeCheckpointError, match="holds Python objects"):
        safe_checkpoint.load_from_local(str(tmp_path / "objects.pth"))


def test_resume_from_malicious_checkpoint_fails_in_the_runner(trained, tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious_checkpoint(tmp_path / "evil.pth", _Payload(os.system, f"touch {marker}"),
                                 trained / "iter_6.pth")
    runner = _runner(tmp_path / "work", iters=8)
    runner._load_from, runner._resume = str(path), True
    with pytest.raises(UnsafeCheckpointError, match="system"):
        runner.train()
    assert not marker.exists()


def test_environment_cannot_turn_weights_only_off(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = _malicious_checkpoint(tmp_path / "evil.pth", _Payload(os.system, f"touch {marker}"),
                                 trained / "iter_6.pth")
    with pytest.raises(UnsafeCheckpointError):
        safe_checkpoint.load_from_local(str(path))
    assert not marker.exists()


def test_url_loader_is_weights_only(trained, tmp_path):
    """http(s) goes through the same allowlist (exercised with a file:// URL, no network)."""
    good = safe_checkpoint.load_from_http((trained / "iter_6.pth").as_uri(),
                                          model_dir=str(tmp_path / "cache"), progress=False)
    assert good["meta"]["iter"] == 6
    marker = tmp_path / "pwned"
    path = _malicious_checkpoint(tmp_path / "evil.pth", _Payload(os.system, f"touch {marker}"),
                                 trained / "iter_6.pth")
    with pytest.raises(UnsafeCheckpointError):
        safe_checkpoint.load_from_http(path.as_uri(), model_dir=str(tmp_path / "cache2"),
                                       progress=False)
    assert not marker.exists()


def test_allow_extends_only_our_loader(trained, tmp_path):
    from fractions import Fraction
    path = _malicious_checkpoint(tmp_path / "extra.pth", Fraction(1, 3), trained / "iter_6.pth")
    with pytest.raises(UnsafeCheckpointError, match="fractions.Fraction"):
        safe_checkpoint.load_from_local(str(path))
    safe_checkpoint.allow(Fraction)
    try:
        assert safe_checkpoint.load_from_local(str(path))["meta"]["note"] == Fraction(1, 3)
        assert Fraction not in torch.serialization.get_safe_globals()
    finally:
        safe_checkpoint._extra.clear()


def test_install_when_imported_defers_until_mmengine_runner_is_imported():
    code = (
        "import sys\n"
        "from visdet_mmext.engine import safe_checkpoint as sc\n"
        "sc.install_when_imported()\n"
        "assert 'mmengine.runner.checkpoint' not in sys.modules\n"
        "assert not sc.is_installed()\n"
        "from mmengine.runner import Runner\n"
        "from mmengine.runner.checkpoint import CheckpointLoader\n"
        "assert sc.is_installed() and CheckpointLoader._schemes[''] is sc.load_from_local\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=subprocess_env(), timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
