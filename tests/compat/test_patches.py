"""Every patch of another library: declared with its range, applied in range, skipped outside it."""
import json

import pytest
import torch

import visdet_mmext
from subprocess_utils import run_python
from visdet_mmext import compat

PATCHES = sorted(compat.PATCHES)


@pytest.mark.parametrize("name", PATCHES)
def test_patch_is_declared_for_the_installed_version_and_not_beyond(name):
    declared = compat.PATCHES[name]
    assert declared.fixes and declared.module and declared.package
    installed = compat.installed_version(declared.package)
    if installed is not None:
        assert declared.covers(installed), f"{name}: {declared.versions} excludes {installed}"
    assert not declared.covers("0.0.1")  # every range has a lower bound


@pytest.mark.slow
def test_every_patch_applies_once_its_module_is_imported():
    out = run_python("""
        import json, visdet_mmext
        import mmengine.runner, mmengine._strategy.deepspeed, deepspeed
        import deepspeed.runtime.zero.muon.original_muon, deepspeed.ops.op_builder.builder
        from visdet_mmext import compat
        print(json.dumps({p['name']: p['state'] for p in compat.report()}))
    """)
    states = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(states) == set(PATCHES)
    assert all(state == "applied" for state in states.values()), states


def test_out_of_range_patch_is_skipped_and_says_so(caplog):
    calls = []

    @compat.patch(package="torch", versions="<1.0", module="json", fixes="a test patch")
    def visdet_test_old_torch(module):
        calls.append(module)

    @compat.patch(package="torch", versions=">=2.0", module="json", fixes="a test patch")
    def visdet_test_current_torch(module):
        calls.append(module)

    try:
        compat.install()
        assert compat.state("visdet_test_old_torch").startswith("skipped: torch")
        assert "outside <1.0" in compat.state("visdet_test_old_torch")
        assert compat.state("visdet_test_current_torch") == "applied"
        assert calls == [json]  # only the in-range one ran, at once (json is imported)
        assert "not applied" in caplog.text
    finally:
        for name in ("visdet_test_old_torch", "visdet_test_current_torch"):
            compat.PATCHES.pop(name)
            compat._states.pop(name)


def test_a_failing_patch_fails_loudly():
    with pytest.raises(RuntimeError, match="could not apply its fix 'visdet_test_broken'"):
        @compat.patch(package="torch", versions=">=2.0", module="json", fixes="nothing")
        def visdet_test_broken(module):
            raise AttributeError("an internal moved")
        try:
            compat.install()
        finally:
            compat.PATCHES.pop("visdet_test_broken")
            assert compat._states.pop("visdet_test_broken").startswith("failed")


@pytest.mark.parametrize("named_by", ["name", "class"])
def test_default_constructor_is_taken_over_by_name_or_class(named_by):
    """mmengine resolves constructor='DefaultOptimWrapperConstructor' (today) or the class."""
    from mmengine.optim import DefaultOptimWrapperConstructor, build_optim_wrapper

    from visdet_mmext.errors import OptimizerConfigError
    constructor = {"name": "DefaultOptimWrapperConstructor",
                   "class": DefaultOptimWrapperConstructor}[named_by]
    model = torch.nn.Linear(4, 2)
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type="AdamW", lr=1e-3),
                                              constructor=constructor))
    assert wrapper.optimizer.param_groups[0]["param_names"] == ["weight", "bias"]
    with pytest.raises(OptimizerConfigError, match="Closest available names: AdamW"):
        build_optim_wrapper(model, dict(optimizer=dict(type="AdamWW"), constructor=constructor))


@pytest.mark.slow
def test_list_json_shows_every_patch():
    result = run_python("from visdet_mmext.cli import main; main(['list', '--json'])")
    listed = json.loads(result.stdout)["patches"]
    assert {p["name"] for p in listed} == set(PATCHES)
    assert all(p["versions"] and p["fixes"] for p in listed)
    assert visdet_mmext.__version__
