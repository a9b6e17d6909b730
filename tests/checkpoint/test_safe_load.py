"""mmengine checkpoints as data: weights-only loading on every mmengine path, payloads refused.

Real checkpoints from a real Runner; real payload files (a ``__reduce__`` that would create a
marker file) placed in every part of a checkpoint and loaded through every mmengine path: resume,
load_from, ``_load_checkpoint`` with local, http (a local server) and other schemes.
"""
import functools
import http.server
import json
import os
import pickle
import subprocess
import sys
import threading

import pytest
import torch

import visdet_mmext.demo  # noqa: F401
from demo_utils import ROOT, assert_same_tensors, state_of, subprocess_env, tiny_cfg
from visdet_mmext.checkpoint import allow, safe_load
from visdet_mmext.compat import mmengine_checkpoint
from visdet_mmext.errors import UnsafeCheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")


def _runner(work_dir, **kwargs):
    from mmengine.runner import Runner
    return Runner.from_cfg(tiny_cfg("optimizers/adamw.py", work_dir, **kwargs))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted 12-iteration run with checkpoints every 6 iterations."""
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    _runner(work_dir, iters=12, checkpoint_interval=6).train()
    return work_dir


class Payload:
    """Pickles as a call to ``function(*args)``, the classic checkpoint attack."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker):
    """Ways a pickle can run code, each creating ``marker`` if it ran."""
    from mmengine.logging import HistoryBuffer
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "eval": Payload(eval, touch),
        "exec": Payload(exec, touch),
        "subprocess": Payload(subprocess.call, ["touch", str(marker)]),
        "import": Payload(__import__, "os"),
        "getattr": Payload(getattr, HistoryBuffer, "register_statistics"),
        "partial": Payload(functools.partial, os.system, f"touch {marker}"),
        "Path.touch": Payload(type(marker).touch, marker),
    }


#: Where in an mmengine checkpoint a payload can sit.
PLACES = {
    "meta": lambda ckpt, p: ckpt["meta"].__setitem__("note", p),
    "state_dict key": lambda ckpt, p: ckpt["state_dict"].__setitem__("evil", p),
    "optimizer state": lambda ckpt, p: ckpt["optimizer"]["state"].__setitem__(99, {"x": p}),
    "message hub": lambda ckpt, p: ckpt["message_hub"].__setitem__("evil", p),
    "top level": lambda ckpt, p: ckpt.__setitem__("evil", p),
}


def poisoned(path, clean_from, payload, place="meta"):
    checkpoint = state_of(str(clean_from))
    PLACES[place](checkpoint, payload)
    torch.save(checkpoint, path)
    return path


def test_mmengine_checkpoints_need_more_than_torch_default(trained):
    """The problem is real: plain weights-only loading refuses an mmengine checkpoint."""
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trained / "iter_12.pth", weights_only=True)
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(trained / "iter_12.pth"))
    assert "mmengine.logging.history_buffer.HistoryBuffer" in names
    allowed = {name for _, name in safe_load.allowed_entries()}
    assert set(names) <= allowed, set(names) - allowed


@pytest.fixture
def model_zoo(trained, tmp_path, http_root, monkeypatch):
    """A clean and a poisoned checkpoint behind every way mmengine names a model: its URL tables
    (open-mmlab's through MMENGINE_HOME's open_mmlab.json, mmcls' and torchvision's replaced)
    point at a local HTTP server, and an open-mmlab entry at a file in MMENGINE_HOME."""
    from mmengine.runner import checkpoint as ckpt
    served, url = http_root
    marker = tmp_path / "pwned"
    (served / "good.pth").write_bytes((trained / "iter_6.pth").read_bytes())
    poisoned(served / "evil.pth", trained / "iter_6.pth", Payload(os.system, f"touch {marker}"))
    home = tmp_path / "mmengine_home"
    home.mkdir()
    poisoned(home / "evil_file.pth", trained / "iter_6.pth", Payload(os.system, f"touch {marker}"))
    urls = {"good": f"{url}/good.pth", "evil": f"{url}/evil.pth"}
    (home / "open_mmlab.json").write_text(json.dumps({**urls, "evil_file": "evil_file.pth"}))
    monkeypatch.setenv("MMENGINE_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # the download cache
    monkeypatch.setattr(ckpt, "get_mmcls_models", lambda: dict(urls))
    monkeypatch.setattr(ckpt, "get_torchvision_models", lambda: dict(urls))
    return marker


@pytest.mark.parametrize("scheme", ["open-mmlab://", "openmmlab://", "mmcls://", "torchvision://",
                                    "modelzoo://"])
def test_every_mmengine_scheme_loads_inside_the_allowlist(model_zoo, scheme):
    """Each model-name scheme loads a clean checkpoint and refuses a poisoned one unrun."""
    from mmengine.runner.checkpoint import _load_checkpoint
    good = _load_checkpoint(f"{scheme}good", map_location="cpu")
    if scheme == "mmcls://":  # it keeps only the state dict's backbone.* entries (none here)
        assert set(good) == {"state_dict"}
    else:
        assert good["meta"]["iter"] == 6
    with pytest.raises(UnsafeCheckpointError, match="Refused to load"):
        _load_checkpoint(f"{scheme}evil", map_location="cpu")
    if scheme == "open-mmlab://":  # an entry that names a file in MMENGINE_HOME: a plain torch.load
        with pytest.raises(UnsafeCheckpointError, match="Refused to load"):
            _load_checkpoint(f"{scheme}evil_file", map_location="cpu")
    assert not model_zoo.exists()


def test_loads_real_checkpoint_without_widening_torch_allowlist(trained):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    before = set(torch.serialization.get_safe_globals())
    checkpoint = _load_checkpoint(str(trained / "iter_12.pth"), map_location="cpu")
    assert set(torch.serialization.get_safe_globals()) == before
    assert checkpoint["meta"]["iter"] == 12
    assert isinstance(checkpoint["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)


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


def test_load_from_takes_weights_only(trained, tmp_path):
    """load_from starts a new run from the checkpoint's weights: not its optimizer state, its
    iteration or its schedule."""
    from mmengine.hooks import Hook

    class AtStart(Hook):
        def before_train(self, runner):
            self.weights = {k: v.clone() for k, v in runner.model.state_dict().items()}
            self.iteration, self.optimizer_state = runner.iter, runner.optim_wrapper.state_dict()

    runner = _runner(tmp_path, iters=1)
    runner._load_from = str(trained / "iter_12.pth")
    start = AtStart()
    runner.register_hook(start)
    runner.train()
    assert_same_tensors(start.weights, state_of(trained / "iter_12.pth")["state_dict"], "weights")
    assert start.iteration == 0 and not start.optimizer_state["state"]


@pytest.mark.parametrize("kind", ["os.system", "eval", "exec", "subprocess", "import", "getattr",
                                  "partial", "Path.touch"])
@pytest.mark.parametrize("place", list(PLACES))
def test_payload_anywhere_is_refused_without_running(trained, tmp_path, kind, place):
    from mmengine.runner.checkpoint import _load_checkpoint
    marker = tmp_path / "pwned"
    path = poisoned(tmp_path / "evil.pth", trained / "iter_6.pth", payloads(marker)[kind], place)
    with pytest.raises(UnsafeCheckpointError) as error:
        _load_checkpoint(str(path), map_location="cpu")
    message = str(error.value)
    assert "evil.pth" in message and "Refused to load" in message
    assert "weights_only=False" in message  # how to proceed when the file is trusted
    assert not marker.exists()


def test_numpy_object_arrays_are_refused(trained, tmp_path):
    import numpy as np
    path = poisoned(tmp_path / "objects.pth", trained / "iter_6.pth",
                    np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(UnsafeCheckpointError, match="holds Python objects"):
        mmengine_checkpoint.load_from_local(str(path))


@pytest.mark.parametrize("mode", ["resume", "load_from"])
def test_runner_refuses_payload(trained, tmp_path, mode):
    marker = tmp_path / "pwned"
    path = poisoned(tmp_path / "evil.pth", trained / "iter_6.pth",
                    Payload(os.system, f"touch {marker}"), "optimizer state")
    runner = _runner(tmp_path / "work", iters=8)
    runner._load_from, runner._resume = str(path), mode == "resume"
    with pytest.raises(UnsafeCheckpointError, match="system"):
        runner.train()
    assert not marker.exists()


def test_environment_cannot_turn_weights_only_off(trained, tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = poisoned(tmp_path / "evil.pth", trained / "iter_6.pth", Payload(os.system, f"touch {marker}"))
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(path), map_location="cpu")
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # the user's setting is restored


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/served``."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_loader_is_weights_only(trained, tmp_path, http_root, monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint
    served, url = http_root
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    (served / "good.pth").write_bytes((trained / "iter_6.pth").read_bytes())
    assert _load_checkpoint(f"{url}/good.pth", map_location="cpu")["meta"]["iter"] == 6
    marker = tmp_path / "pwned"
    poisoned(served / "evil.pth", trained / "iter_6.pth", Payload(os.system, f"touch {marker}"))
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(f"{url}/evil.pth", map_location="cpu")
    assert not marker.exists()


def test_third_party_scheme_runs_inside_the_allowlist(trained, tmp_path):
    """A loader another package registers (it calls torch.load itself) is weights-only too."""
    from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

    def load_from_vendor(filename, map_location=None):
        return torch.load(filename[len("vendor://"):], map_location=map_location, weights_only=False)

    CheckpointLoader.register_scheme("vendor://", load_from_vendor, force=True)
    marker = tmp_path / "pwned"
    path = poisoned(tmp_path / "evil.pth", trained / "iter_6.pth", Payload(os.system, f"touch {marker}"))
    try:
        assert _load_checkpoint(f"vendor://{trained / 'iter_6.pth'}")["meta"]["iter"] == 6
        with pytest.raises(UnsafeCheckpointError):
            _load_checkpoint(f"vendor://{path}")
    finally:
        CheckpointLoader._schemes.pop("vendor://")
    assert not marker.exists()


def test_allow_extends_only_our_loads(trained, tmp_path):
    from fractions import Fraction
    path = poisoned(tmp_path / "extra.pth", trained / "iter_6.pth", Fraction(1, 3))
    with pytest.raises(UnsafeCheckpointError, match="fractions.Fraction"):
        mmengine_checkpoint.load_from_local(str(path))
    allow(Fraction)
    try:
        assert mmengine_checkpoint.load_from_local(str(path))["meta"]["note"] == Fraction(1, 3)
        assert Fraction not in torch.serialization.get_safe_globals()
    finally:
        safe_load._extra.clear()


@pytest.mark.slow
def test_patch_waits_until_mmengine_runner_is_imported(trained, tmp_path):
    """Imported before mmengine's runner, the package still makes its loads weights-only."""
    marker = tmp_path / "pwned"
    path = poisoned(tmp_path / "evil.pth", trained / "iter_6.pth", Payload(os.system, f"touch {marker}"))
    code = (
        "import sys, visdet_mmext\n"
        "from visdet_mmext import compat\n"
        "assert 'mmengine.runner.checkpoint' not in sys.modules\n"
        "assert compat.state('mmengine_weights_only_checkpoints').startswith('waiting')\n"
        "from mmengine.runner.checkpoint import _load_checkpoint\n"
        "from visdet_mmext.errors import UnsafeCheckpointError\n"
        f"assert _load_checkpoint({str(trained / 'iter_6.pth')!r})['meta']['iter'] == 6\n"
        "try:\n"
        f"    _load_checkpoint({str(path)!r})\n"
        "except UnsafeCheckpointError:\n"
        "    print('refused')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=subprocess_env(), timeout=300)
    assert result.returncode == 0 and "refused" in result.stdout, result.stderr[-3000:]
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_refused_globals_are_named_as_the_code_wrote_them(trained, tmp_path, protocol):
    """Protocol 2 records subprocess.call as Python 2's commands.call; protocol 4 uses opcodes
    torch's own global scan does not read."""
    checkpoint = state_of(str(trained / "iter_6.pth"))
    checkpoint["meta"]["note"] = Payload(subprocess.call, ["true"])
    torch.save(checkpoint, tmp_path / "evil.pth", pickle_protocol=protocol)
    with pytest.raises(UnsafeCheckpointError) as error:
        safe_load.safe_torch_load(tmp_path / "evil.pth", map_location="cpu")
    assert "it holds subprocess.call, which is outside" in str(error.value)
    assert "commands" not in str(error.value)


@pytest.mark.slow
def test_the_refusals_advice_works_as_written(trained, tmp_path, capsys, monkeypatch):
    """The command the refusal prints makes clean.pth, and the flag it names trains from it."""
    import re

    from demo_utils import CONFIGS, cli_options
    from visdet_mmext.tools import train as train_tool
    adamw = os.path.join(CONFIGS, "optimizers", "adamw.py")
    path = poisoned(tmp_path / "evil.pth", trained / "iter_6.pth", Payload(os.system, "true"))
    monkeypatch.chdir(tmp_path)
    options = ["--cfg-options", *cli_options(iters=2), "model.widths=(8,16,32)"]
    assert train_tool.main([adamw, "--work-dir", "work", "--resume", str(path), *options]) == 2
    message = capsys.readouterr().err
    command = re.search(r'python -c "(.+?)" and start from them with --cfg-options '
                        r'load_from=clean.pth \(not --resume', message).group(1)
    subprocess.run([sys.executable, "-c", command], cwd=tmp_path, env=subprocess_env(),
                   check=True, timeout=300)
    assert train_tool.main([adamw, "--work-dir", "work", *options, "load_from=clean.pth",
                            "log_level=INFO"]) == 0
    log = next((tmp_path / "work").rglob("*.log")).read_text()
    assert "Load checkpoint from clean.pth" in log
