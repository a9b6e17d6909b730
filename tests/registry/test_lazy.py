"""Optional packages are imported on first use: `import visdet_mmext` imports none of them, the
report still says what is available, and mmengine builds the real class."""

import pytest

from subprocess_utils import run_json

#: Packages whose optimizers the catalog serves; mmengine.optim imports some of them itself.
OPTIONAL = ("schedulefree", "prodigyopt", "pytorch_optimizer", "dadaptation", "transformers",
            "bitsandbytes", "deepspeed")


@pytest.mark.slow
def test_import_adds_no_optional_package_and_builds_the_real_class_on_first_use():
    out = run_json(f"""
        import json, sys
        import mmengine.optim
        before = set(sys.modules)
        import torch, visdet_mmext
        from mmengine.registry import OPTIMIZERS
        imported = sorted(m for m in {OPTIONAL!r} if m in sys.modules and m not in before)
        report = {{name: visdet_mmext.REPORT.availability(name).status
                  for name in ("Prodigy", "AdamWScheduleFree", "SOAP", "DeepSpeedCPUAdam")}}
        stand_in = OPTIMIZERS.get("Prodigy")
        built = OPTIMIZERS.build(dict(type="Prodigy", params=[torch.nn.Parameter(torch.ones(2))]))
        import prodigyopt
        print(json.dumps(dict(imported=imported, report=report,
                              stand_in_is_class=isinstance(stand_in, type),
                              built=type(built) is prodigyopt.Prodigy,
                              registered_now=OPTIMIZERS.get("Prodigy") is prodigyopt.Prodigy)))
    """)
    assert out["imported"] == []
    assert set(out["report"].values()) == {"available"}
    assert not out["stand_in_is_class"] and out["built"] and out["registered_now"]


@pytest.mark.slow
def test_settings_of_a_lazy_optimizer_are_checked_against_its_class():
    out = run_json("""
        import json, torch, visdet_mmext
        from mmengine.optim import build_optim_wrapper
        from visdet_mmext.errors import OptimizerConfigError
        try:
            build_optim_wrapper(torch.nn.Linear(2, 2), dict(optimizer=dict(type="Prodigy", lrr=1.0)))
        except OptimizerConfigError as error:
            print(json.dumps(str(error)))
    """)
    assert "Prodigy has no setting 'lrr'" in out


@pytest.mark.slow
def test_an_uninstalled_package_is_reported_missing_without_an_import_attempt():
    out = run_json("""
        import json, visdet_mmext
        from mmengine.registry import OPTIMIZERS
        info = visdet_mmext.REPORT.availability("Prodigy")
        print(json.dumps(dict(status=info.status, reason=info.reason,
                              registered="Prodigy" in OPTIMIZERS.module_dict)))
    """, hide=("prodigyopt",))
    assert out == dict(status="missing package", reason="prodigyopt is not installed",
                       registered=False)
