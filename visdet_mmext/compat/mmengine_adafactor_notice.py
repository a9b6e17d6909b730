"""No "the torch version of Adafactor is registered as TorchAdafactor" on every Adafactor build.

mmengine's optimizer build function prints that line (to stdout, not through a logger) whenever a
config says ``type='Adafactor'`` on torch >= 2.5. In the catalog ``Adafactor`` is Hugging Face's
and ``TorchAdafactor`` torch's, as the line says, so it tells nothing and is printed at every
build. The registry builds through ``build_from_cfg`` directly, which is all that function does
besides printing.
"""
from __future__ import annotations

from . import patch


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.registry.root",
       fixes="""every build of type='Adafactor' prints a line about torch's Adafactor to stdout""")
def mmengine_adafactor_notice(module) -> None:
    from mmengine.registry.build_functions import build_from_cfg, build_optimizer_from_cfg
    if module.OPTIMIZERS.build_func is not build_optimizer_from_cfg:
        raise RuntimeError("mmengine's OPTIMIZERS registry no longer builds through "
                           "build_optimizer_from_cfg")
    module.OPTIMIZERS.build_func = build_from_cfg
