"""mmengine hooks for the training process itself (not the optimizer): ``CpuThreadsHook``."""
from .cpu_threads import CpuThreadsHook, auto_threads, threads_for

__all__ = ["CpuThreadsHook", "auto_threads", "threads_for"]
