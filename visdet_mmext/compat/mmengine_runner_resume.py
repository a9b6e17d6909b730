"""mmengine's ``Runner.resume`` continues only a run of this model, from a checkpoint it can use.

``Runner.resume`` loads the weights with ``strict=False`` and then the optimizer state and the
iteration count whatever the weights did: another model's checkpoint trains on silently. A
weights-only export ends in ``KeyError: 'meta'``, and a checkpoint renamed to a later
iteration resumes at its own iteration without a word. While ``resume`` runs, the weights now
reach the model only after ``checkpoint.model_fit`` found every name and shape equal and the
checkpoint holds training state; a file named for another iteration is reported.
``Runner.load_checkpoint`` outside ``resume`` (``load_from``) keeps mmengine's lenient loading.
"""
from __future__ import annotations

import contextvars
import inspect
import logging

from . import patch, replace_attribute

_resuming: contextvars.ContextVar[str | None] = contextvars.ContextVar("resuming", default=None)


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""resume from another model's checkpoint skips the weights that do not fit and
       trains on with the optimizer state and iteration count; a weights-only checkpoint
       fails with KeyError: 'meta'""")
def mmengine_resume_checks(module) -> None:
    from mmengine.logging import print_log

    from ..checkpoint.model_fit import check_model_fit, iteration_mismatch
    from ..checkpoint.resume import training_state_problem
    from ..errors import CheckpointError

    load_to_model = module._load_checkpoint_to_model
    signature = inspect.signature(load_to_model)

    def checked_load_to_model(*args, **kwargs):
        path = _resuming.get()
        if path is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            checkpoint = bound.arguments["checkpoint"]
            problem = training_state_problem(checkpoint, path)
            if problem:
                raise CheckpointError(f"--resume {path}: {problem}. Nothing was loaded.")
            check_model_fit(bound.arguments["model"], checkpoint, path,
                            bound.arguments["revise_keys"])
            warning = iteration_mismatch(checkpoint, path)
            if warning:
                print_log(warning, logger="current", level=logging.WARNING)
        return load_to_model(*args, **kwargs)

    module._load_checkpoint_to_model = checked_load_to_model

    def make(resume):
        def checked_resume(self, filename, *args, **kwargs):
            token = _resuming.set(str(filename))
            try:
                return resume(self, filename, *args, **kwargs)
            finally:
                _resuming.reset(token)
        return checked_resume

    replace_attribute(module.Runner, "resume", make)
