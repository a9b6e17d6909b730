"""A hook that fills one rank's disk: from the first epoch on, that rank's writes past ``limit``
bytes fail with EFBIG ("File too large"), as on a node whose local disk fills mid-save."""
import resource
import signal

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class FileSizeLimitHook(Hook):

    def __init__(self, rank: int, limit: int):
        self.rank, self.limit = rank, limit

    def before_train_epoch(self, runner):
        if get_rank() == self.rank:  # after the engine is built: its ops are loaded by now
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (self.limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
