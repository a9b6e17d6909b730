"""DeepSpeed's optimizers as mmengine optimizers on CPU, and the lazy, re-entrant registration.

The step tests JIT-build DeepSpeed's CPU ops on first use (1-3 min each on 2 cores; cached in
``TORCH_EXTENSIONS_DIR``).
"""
import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import visdet_mmext
from visdet_mmext.errors import OptimizerConfigError

pytestmark = pytest.mark.deepspeed

from subprocess_utils import REPO as ROOT
CPU_OPTIMIZERS = {
    "DeepSpeedCPUAdam": dict(lr=1e-2, weight_decay=0.01),
    "DeepSpeedCPUAdagrad": dict(lr=1e-1, weight_decay=1e-4),
    "DeepSpeedCPULion": dict(lr=3e-3, weight_decay=0.1),
    "FusedAdam": dict(lr=1e-2, weight_decay=0.01),
}


def regression(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.randn(128, 8)
    y = (x[:, :4].sum(1, keepdim=True) - x[:, 4:].prod(1, keepdim=True)).tanh()
    return net, x, y


def build(net, name):
    from mmengine.optim import build_optim_wrapper
    cfg = dict(optimizer=dict(type=name, **CPU_OPTIMIZERS[name]),
               paramwise_cfg=dict(bias_decay_mult=0.0))
    return build_optim_wrapper(net, cfg)


def through_a_file(state: dict) -> dict:
    """What a checkpoint gives back: no tensor shared with the running optimizer."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def train(net, wrapper, x, y, steps):
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(net(x), y)
        wrapper.update_params(loss)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(CPU_OPTIMIZERS))
def test_cpu_optimizer_takes_real_steps_and_round_trips_its_state(name):
    assert visdet_mmext.REPORT.availability(name).usable
    net, x, y = regression()
    wrapper = build(net, name)
    assert type(wrapper.optimizer).__name__ == name
    assert type(wrapper.optimizer).__module__.startswith("deepspeed.ops")
    losses = train(net, wrapper, x, y, 40)
    assert losses[-1] < 0.5 * losses[0], losses

    # save, rebuild from the config, load, and continue both: identical trajectories
    saved_model, saved_optim = through_a_file(net.state_dict()), through_a_file(wrapper.state_dict())
    twin, _, _ = regression(seed=1)
    twin.load_state_dict(saved_model)
    twin_wrapper = build(twin, name)
    twin_wrapper.load_state_dict(saved_optim)
    # Same trajectory to fp32 rounding: DeepSpeed's C++ Adam keeps beta**step as a running
    # product, which a fresh optimizer recomputes with pow() (a last-bit difference).
    assert train(net, wrapper, x, y, 10) == pytest.approx(train(twin, twin_wrapper, x, y, 10),
                                                          rel=1e-6)
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["FusedLamb", "FusedLion"])
def test_cuda_only_deepspeed_optimizers_are_reported_and_refused_on_cpu(name):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    info = visdet_mmext.REPORT.availability(name)
    assert info.status == "needs CUDA"
    from mmengine.optim import build_optim_wrapper
    with pytest.raises(OptimizerConfigError, match=f"{name}.*needs CUDA"):
        build_optim_wrapper(nn.Linear(2, 2), dict(optimizer=dict(type=name, lr=1e-3)))
    from mmengine.registry import OPTIMIZERS
    with pytest.raises(RuntimeError, match="needs CUDA"):  # outside the checked constructor too
        OPTIMIZERS.build(dict(type=name, params=nn.Linear(2, 2).parameters()))


def run_python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_registration_is_lazy_and_keeps_mmengines_strategy_importable():
    out = run_python("""
        import sys
        import visdet_mmext
        from mmengine.registry import OPTIMIZERS, STRATEGIES
        assert 'deepspeed' not in sys.modules, 'import visdet_mmext imported deepspeed'
        assert 'DeepSpeedCPUAdam' in OPTIMIZERS.module_dict
        assert 'DeepSpeedStrategy' not in STRATEGIES.module_dict
        import mmengine.runner  # imports mmengine's DeepSpeedStrategy module: must not raise
        import mmengine._strategy.deepspeed as mm
        strategy = STRATEGIES.get('DeepSpeedStrategy')
        assert strategy.__module__ == 'visdet_mmext.deepspeed.strategy', strategy
        assert issubclass(strategy, mm.DeepSpeedStrategy)
        first, second = mm.register_deepspeed_optimizers(), mm.register_deepspeed_optimizers()
        assert first == second and 'OnebitAdam' not in first, first
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        assert OPTIMIZERS.get('DeepSpeedCPUAdam') is DeepSpeedCPUAdam
        print('ok', sorted(first))
    """)
    assert out.splitlines()[-1].startswith("ok"), out


def test_importing_the_package_after_mmengine_runner_patches_at_once():
    """Imported after mmengine's DeepSpeed module, the package fixes it at once: its optimizer
    registration runs (mmengine's own imports DeepSpeed's removed 1-bit module) and runs again."""
    out = run_python("""
        import mmengine.runner
        import mmengine._strategy.deepspeed as mm
        import visdet_mmext
        from mmengine.registry import OPTIMIZERS, STRATEGIES
        assert STRATEGIES.get('DeepSpeedStrategy').__module__ == 'visdet_mmext.deepspeed.strategy'
        assert mm.register_deepspeed_optimizers() == mm.register_deepspeed_optimizers()
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        assert OPTIMIZERS.get('DeepSpeedCPUAdam') is DeepSpeedCPUAdam
        from visdet_mmext import compat
        states = {p['name']: p['state'] for p in compat.report()}
        assert states['mmengine_deepspeed_strategy'] == 'applied'
        assert states['deepspeed_weights_only_checkpoints'] == 'applied'
        print('ok')
    """)
    assert out.splitlines()[-1].startswith("ok"), out
