"""mmengine's ``resume`` continues only a run of this model, from a checkpoint it can use.

``Runner.resume`` loads the weights with ``strict=False`` and then the optimizer state and the
iteration count whatever the weights did: another model's checkpoint trains on silently. A
weights-only export ends in ``KeyError: 'meta'``, and a checkpoint renamed to a later
iteration resumes at its own iteration without a word. ``FlexibleRunner.resume`` hands the
checkpoint to its strategy, which does the same or fails with a traceback. While either
``resume`` runs, the weights now reach the model only after ``checkpoint.model_fit`` found
every name and shape equal and the checkpoint holds training state; a file named for another
iteration is reported. Loading outside ``resume`` (``load_from``) keeps mmengine's lenient
loading.
"""
from __future__ import annotations

import contextvars
import inspect

from . import patch, replace_attribute

_resuming: contextvars.ContextVar[str | None] = contextvars.ContextVar("resuming", default=None)


def resumed_path() -> str | None:
    """The checkpoint a runner's ``resume`` is loading now (None outside ``resume``)."""
    return _resuming.get()


def _setting_resumed_path(resume):
    def checked_resume(self, filename, *args, **kwargs):
        token = _resuming.set(str(filename))
        try:
            return resume(self, filename, *args, **kwargs)
        finally:
            _resuming.reset(token)
    return checked_resume


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""resume from another model's checkpoint skips the weights that do not fit and
       trains on with the optimizer state and iteration count; a weights-only checkpoint
       fails with KeyError: 'meta'""")
def mmengine_resume_checks(module) -> None:
    from ..checkpoint.model_fit import check_resumed

    load_to_model = module._load_checkpoint_to_model
    signature = inspect.signature(load_to_model)

    def checked_load_to_model(*args, **kwargs):
        path = _resuming.get()
        if path is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check_resumed(bound.arguments["model"].state_dict(), bound.arguments["checkpoint"],
                          path, bound.arguments["revise_keys"])
        return load_to_model(*args, **kwargs)

    module._load_checkpoint_to_model = checked_load_to_model
    replace_attribute(module.Runner, "resume", _setting_resumed_path)


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner._flexible_runner",
       fixes="""FlexibleRunner.resume from another model's checkpoint fails with a traceback
       (DeepSpeed, or a head of another shape) or trains on with the weights that fit (other
       names); a weights-only checkpoint fails with KeyError""")
def mmengine_flexible_resume_checks(module) -> None:
    # The checks run where each strategy has read the checkpoint: SingleDeviceStrategy's
    # load_checkpoint below (its DDP and FSDP2 subclasses), DeepSpeed's engine
    # (compat.deepspeed_checkpoint).
    replace_attribute(module.FlexibleRunner, "resume", _setting_resumed_path)


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine._strategy.single_device",
       fixes="""the strategies' resume loads another model's checkpoint with strict=False, or
       fails with a traceback when a weight has another shape""")
def mmengine_strategy_resume_checks(module) -> None:
    from mmengine.model import is_model_wrapper

    from ..checkpoint.model_fit import check_resumed

    signature = inspect.signature(module.SingleDeviceStrategy.load_checkpoint)

    def make(load_checkpoint):
        def checked_load_checkpoint(self, *args, **kwargs):
            path = _resuming.get()
            if path is None:
                return load_checkpoint(self, *args, **kwargs)
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            callback = bound.arguments["callback"]

            def check_after_callback(checkpoint):  # the hooks may rename keys first
                if callback is not None:
                    callback(checkpoint)
                model = self.model.module if is_model_wrapper(self.model) else self.model
                check_resumed(model.state_dict(), checkpoint, path, bound.arguments["revise_keys"])

            bound.arguments["callback"] = check_after_callback
            return load_checkpoint(*bound.args, **bound.kwargs)
        return checked_load_checkpoint

    replace_attribute(module.SingleDeviceStrategy, "load_checkpoint", make)
