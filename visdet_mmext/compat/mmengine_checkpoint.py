"""mmengine's checkpoint loading, weights-only and integrity-checked (resume, load_from, init_cfg).

Every mmengine load goes through ``CheckpointLoader.load_checkpoint``, which picks a loader by
scheme; the loaders call ``torch.load`` (the http one through ``torch.hub``, which defaults to
``weights_only=False``). The whole call now runs inside :func:`weights_only_loads`, whatever scheme
or third-party loader answers, and local files and http downloads are integrity-checked first.
A local path may also name a DeepSpeed checkpoint directory: its weights load as a checkpoint
file's would (``load_from`` of a DeepSpeed run's checkpoint in a run without DeepSpeed).
"""
from __future__ import annotations

import functools
import os
from urllib.parse import urlparse

import torch

from ..checkpoint.deepspeed_layout import as_checkpoint_file, is_deepspeed_checkpoint
from ..checkpoint.safe_load import safe_torch_load, weights_only_loads
from . import patch


def load_from_local(filename, map_location=None):
    """mmengine's local loader, weights-only (the name keeps mmengine's log line: 'by local')."""
    filename = os.path.expanduser(os.fspath(filename))
    if is_deepspeed_checkpoint(filename):
        return as_checkpoint_file(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return safe_torch_load(filename, map_location)


def _download(url: str, model_dir=None, progress: bool = False) -> str:
    model_dir = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir, os.path.basename(urlparse(url).path))
    if not os.path.exists(cached):
        torch.hub.download_url_to_file(url, cached, progress=progress)
    return cached


def load_from_http(filename, map_location=None, model_dir=None, progress=None):
    """mmengine's http(s) loader (download once, rank 0 first), weights-only and checked."""
    from mmengine.dist import get_dist_info
    progress = os.isatty(0) if progress is None else progress
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = safe_torch_load(_download(filename, model_dir, progress), map_location)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_torch_load(_download(filename, model_dir, progress), map_location)
    return checkpoint


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.checkpoint",
       fixes="""mmengine's loaders call torch.load without weights_only (the http one through
       torch.hub, which turns it off), so on torch < 2.6 or over http a checkpoint can run code;
       on torch >= 2.6 mmengine's own checkpoints fail to load; damaged files load silently""")
def mmengine_weights_only_checkpoints(module) -> None:
    loader_cls = module.CheckpointLoader
    original = loader_cls.load_checkpoint.__func__

    @functools.wraps(original)
    def load_checkpoint(cls, filename, map_location=None, logger="current"):
        with weights_only_loads(filename):
            return original(cls, filename, map_location, logger)

    loader_cls.load_checkpoint = classmethod(load_checkpoint)  # it is a classmethod in mmengine
    loader_cls.register_scheme("", load_from_local, force=True)
    loader_cls.register_scheme(("http://", "https://"), load_from_http, force=True)
    module.load_from_http = load_from_http  # torchvision://, open-mmlab://, mmcls:// call it by name
