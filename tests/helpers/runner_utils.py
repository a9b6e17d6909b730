"""Build a real mmengine Runner around the toy problem."""
import logging
import uuid

import torch
from mmengine.runner import Runner
from torch.utils.data import Dataset

from toy import ToyClassifier, toy_data


class DictDataset(Dataset):
    def __init__(self, data: dict):
        self.data = data

    def __len__(self):
        return len(next(iter(self.data.values())))

    def __getitem__(self, index):
        return {key: value[index] for key, value in self.data.items()}


def make_runner(work_dir, optim_wrapper, *, model=None, data=None, max_iters=30, batch_size=64,
                param_scheduler=None, checkpoint_interval=1000, val_interval=1000,
                default_scope="mmengine", **extra):
    torch.manual_seed(0)
    # InfiniteSampler: with DefaultSampler mmengine's iteration loop sleeps 2 s at every epoch end
    return Runner(
        model=model or ToyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=DictDataset(data or toy_data()), batch_size=batch_size,
                              sampler=dict(type="InfiniteSampler", shuffle=True, seed=0),
                              collate_fn=dict(type="default_collate"), num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=val_interval),
        optim_wrapper=optim_wrapper,
        param_scheduler=param_scheduler,
        default_hooks=dict(logger=dict(type="LoggerHook", interval=5),
                           checkpoint=dict(type="CheckpointHook", interval=checkpoint_interval,
                                           by_epoch=False)),
        randomness=dict(seed=0),
        log_level=extra.pop("log_level", logging.WARNING),
        default_scope=default_scope,
        experiment_name=f"test_{uuid.uuid4().hex[:12]}",
        **extra,
    )


def logged(runner, key):
    """Every value of a scalar the Runner logged (e.g. 'train/loss', 'train/lr')."""
    return list(runner.message_hub.get_scalar(key).data[0])
