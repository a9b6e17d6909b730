"""DeepSpeed checkpoints loaded as data: integrity-checked, weights-only, every file, every stage.

``DeepSpeedEngine.load_checkpoint`` (which mmengine's ``DeepSpeedStrategy`` calls for resume and
load_from) reads the model states and every ZeRO optimizer shard with ``torch.load(...,
weights_only=False)`` (its checkpoint engines, universal checkpoints, MoE experts). The engine's
method now checks every state file of the tag directory first, then runs with weights-only
forced on for every load inside it (``safe_load.weights_only_loads``).
"""
from __future__ import annotations

import os

from ..checkpoint import integrity
from ..checkpoint.safe_load import weights_only_loads
from ..errors import CorruptCheckpointError
from . import patch, replace_attribute


def _tag_directory(load_dir, tag) -> str | None:
    if tag is None:
        latest = os.path.join(load_dir, "latest")
        if not os.path.isfile(latest):
            return None  # DeepSpeed then reports that there is nothing to load
        with open(latest) as f:
            tag = f.read().strip()
    return os.path.join(load_dir, str(tag))


def verify_directory(directory: str) -> None:
    reason = integrity.directory_problem(directory)
    if reason:
        raise CorruptCheckpointError(
            f"DeepSpeed checkpoint {directory!r} is damaged: {reason}. It was not loaded. Use "
            "another checkpoint (with --resume and no path, visdet-mmext train takes the newest "
            "usable one in the work dir).")


@patch(package="deepspeed", versions=">=0.16", module="deepspeed.runtime.engine",
       fixes="""DeepSpeed loads every checkpoint file with torch.load(weights_only=False), so a
       checkpoint directory can run code on resume, and damaged files load silently""")
def deepspeed_weights_only_checkpoints(module) -> None:
    def make(original):
        def load_checkpoint(self, load_dir, tag=None, *args, **kwargs):
            directory = _tag_directory(load_dir, tag)
            if directory is not None and os.path.isdir(directory):
                verify_directory(directory)
            with weights_only_loads(directory or load_dir, deepspeed=True):
                return original(self, load_dir, tag, *args, **kwargs)
        return load_checkpoint

    replace_attribute(module.DeepSpeedEngine, "load_checkpoint", make)
