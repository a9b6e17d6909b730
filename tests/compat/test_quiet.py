"""Quiet by default: `list` and the demo print no warning that the package does not explain.

Known third-party messages are filtered at their own logger (compat/noise.py) and explained by
`list`; any other message of those loggers still passes.
"""
import logging
import re
import subprocess
import sys

import pytest
import torch

import visdet_mmext  # noqa: F401  (installs the filters)
from demo_utils import ROOT, TRAIN, cli_options, subprocess_env, tiny_cfg
from visdet_mmext.compat import noise

#: a logging record at WARNING (any format) or a Python warning ("UserWarning: ...")
WARNING_LINE = re.compile(r"\bWARNING\b|\w+Warning: ")


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if WARNING_LINE.search(line)]


@pytest.mark.slow
def test_list_prints_no_unexplained_warning():
    result = subprocess.run([sys.executable, "-m", "visdet_mmext", "list"], capture_output=True,
                            text=True, cwd=ROOT, env=subprocess_env(), timeout=600)
    assert result.returncode == 0
    assert _warnings(result.stdout + result.stderr) == []
    if torch.version.cuda is None:  # DeepSpeed's CPU notice: dropped, and explained instead
        assert "note: deepspeed logged 'Setting accelerator to CPU'" in result.stdout


@pytest.mark.slow
def test_demo_prints_no_warning(tmp_path):
    result = subprocess.run([sys.executable, TRAIN, "demo_muon", "--work-dir", str(tmp_path),
                             "--cfg-options", *cli_options(iters=2), "log_level=INFO"],
                            capture_output=True, text=True, cwd=ROOT, env=subprocess_env(),
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training finished" in result.stdout
    assert _warnings(result.stdout + result.stderr) == []


@pytest.fixture
def records():
    """Records reaching the bitsandbytes CPU backend's logger (its filters apply first)."""
    bnb_logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    bnb_logger.addHandler(handler)
    yield bnb_logger, seen
    bnb_logger.removeHandler(handler)


def test_bitsandbytes_kernel_hub_notice_is_dropped_and_other_warnings_pass(records):
    bnb_logger, seen = records
    known = next(k for k in noise.KNOWN if k.package == "bitsandbytes")
    before = next((r["dropped"] for r in noise.report() if r["package"] == "bitsandbytes"), 0)
    # the call bitsandbytes 0.50 makes on CPUs with AVX512-BF16 when the kernels hub is unreachable
    bnb_logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please "
                       "make sure you already `pip install kernels` and the kernels >= 0.11.1",
                       ModuleNotFoundError("No module named 'kernels'"))
    bnb_logger.warning("Failed to load the CPU library: %s", "libbitsandbytes_cpu.so")
    assert [record.getMessage() for record in seen] == [
        "Failed to load the CPU library: libbitsandbytes_cpu.so"]
    after = next(r["dropped"] for r in noise.report() if r["package"] == "bitsandbytes")
    assert after == before + 1
    assert any(known.explanation in line for line in noise.explanations())


def test_an_adafactor_build_prints_nothing(capsys):
    from mmengine.optim import build_optim_wrapper

    from toy import ToyClassifier
    wrapper = build_optim_wrapper(ToyClassifier(), dict(optimizer=dict(type="Adafactor")))
    assert type(wrapper.optimizer).__module__ == "visdet_mmext.algorithms.hf_adafactor"
    assert "TorchAdafactor" not in capsys.readouterr().out  # mmengine's print about torch's


@pytest.mark.slow
def test_runner_from_cfg_prints_no_accelerator_notice(tmp_path):
    """The Runner.from_cfg script of docs/logs.md (the package imported first) trains, DeepSpeed
    imported by mmengine's runner, without DeepSpeed's accelerator notice."""
    if torch.version.cuda is not None:
        pytest.skip("with a CUDA build of torch the notice means no GPU was found, and stays")
    config = tmp_path / "my_config.py"
    tiny_cfg("optimizers/adamw.py", tmp_path / "work", iters=2).dump(str(config))
    script = tmp_path / "from_cfg.py"
    script.write_text(f"""
import sys
import visdet_mmext  # noqa: F401
from mmengine.config import Config
from mmengine.runner import Runner

Runner.from_cfg(Config.fromfile({str(config)!r})).train()
print("trained; deepspeed imported:", "deepspeed" in sys.modules)
""")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=ROOT, env=subprocess_env(), timeout=600)
    assert "trained; deepspeed imported: True" in result.stdout, result.stderr[-3000:]
    assert "Setting accelerator to CPU" not in result.stdout + result.stderr
