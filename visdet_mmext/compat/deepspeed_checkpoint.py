"""DeepSpeed checkpoints loaded as data: checked, weights-only, every file, every stage.

``DeepSpeedEngine.load_checkpoint`` (which mmengine's ``DeepSpeedStrategy`` calls for resume and
load_from) reads the model states and every ZeRO optimizer shard with ``torch.load(...,
weights_only=False)`` (its checkpoint engines, universal checkpoints, MoE experts), with no bound
on what a file holds, and loads another model's weights strictly (a traceback). The engine's
method now first loads every state file of the tag directory through the package's loader
(integrity, weights-only, the bounds of ``docs/security.md``); while a runner resumes, the
model states must hold training state and this model's names and shapes
(``checkpoint.model_fit``); then DeepSpeed's own load runs with weights-only forced on for
every ``torch.load`` inside it (``safe_load.weights_only_loads``).
"""
from __future__ import annotations

import os

from ..checkpoint.deepspeed_layout import (DEEPSPEED_WEIGHTS, load_deepspeed_checkpoint,
                                           model_shapes, saved_shapes)
from ..checkpoint.model_fit import check_resumed
from ..checkpoint.resume import kind_problem
from ..checkpoint.safe_load import weights_only_loads
from ..errors import CheckpointError
from . import patch, replace_attribute
from .mmengine_runner_resume import resumed_path


def _tag_directory(load_dir, tag) -> str | None:
    if tag is None:
        latest = os.path.join(load_dir, "latest")
        if not os.path.isfile(latest):
            return None  # DeepSpeed then reports that there is nothing to load
        with open(latest) as f:
            tag = f.read().strip()
    return os.path.join(load_dir, str(tag))


@patch(package="deepspeed", versions=">=0.16", module="deepspeed.runtime.engine",
       fixes="""DeepSpeed loads every checkpoint file with torch.load(weights_only=False) and no
       bounds, so a checkpoint directory can run code on resume and damaged files load
       silently; another model's checkpoint fails with a traceback""")
def deepspeed_weights_only_checkpoints(module) -> None:
    def make(original):
        def load_checkpoint(self, load_dir, tag=None, *args, **kwargs):
            directory = _tag_directory(load_dir, tag)
            resumed = resumed_path()
            if directory is not None and not os.path.isdir(directory):
                raise CheckpointError(
                    f"{'--resume ' if resumed else 'DeepSpeed checkpoint '}{directory}: "
                    f"{kind_problem(directory, directories=True)}. Nothing was loaded.")
            if directory is not None:
                states = load_deepspeed_checkpoint(directory)
                if resumed is not None:
                    if DEEPSPEED_WEIGHTS in states:
                        states = dict(states, **{DEEPSPEED_WEIGHTS: saved_shapes(states)})
                    check_resumed(model_shapes(self.module), states, resumed,
                                  weights=DEEPSPEED_WEIGHTS)
            with weights_only_loads(directory or load_dir, deepspeed=True):
                return original(self, load_dir, tag, *args, **kwargs)
        return load_checkpoint

    replace_attribute(module.DeepSpeedEngine, "load_checkpoint", make)
