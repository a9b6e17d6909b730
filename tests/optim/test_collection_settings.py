"""pytorch-optimizer's classes take **kwargs and keep unknown keys silently: the catalog marks
them, and their settings are checked against their named parameters before training."""
import pytest

import visdet_mmext  # noqa: F401  (registers the optimizers)
from visdet_mmext.errors import OptimizerConfigError
from visdet_mmext.optim import check_optimizer_cfg


@pytest.mark.parametrize("name", ["SOAP", "SophiaH"])
def test_a_misspelt_setting_is_refused_with_the_closest_name(name):
    check_optimizer_cfg(dict(type=name, lr=1e-3, weight_decay=0.01))
    with pytest.raises(OptimizerConfigError, match="Did you mean weight_decay"):
        check_optimizer_cfg(dict(type=name, lr=1e-3, weight_decy=0.01))
