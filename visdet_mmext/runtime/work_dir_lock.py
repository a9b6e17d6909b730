"""One live run per work dir: ``visdet-mmext train`` holds ``<work_dir>/.visdet-mmext.lock``.

Two runs into one work dir destroy each other: each deletes the other's checkpoints
(``max_keep_ckpts``), resumes from the other's files and writes into its log. So a run takes the
work dir's lock before it reads or writes anything there, and gives it back when it ends. The
lock file records who holds it (PID, host, start, command) and the holder keeps an exclusive
``flock`` on it, which the kernel releases when the process ends however it ends (SIGKILL too).
A second run then finds:

- the lock held: refused, naming the other run and ``--take-over-work-dir``;
- a lock file nobody holds: the run that wrote it was killed. On the same host its PID is
  checked too (alive with the same start time means the file system ignores ``flock``: refused);
  then the lock is taken over, with one line saying so;
- a record written on another host and not held: ``flock`` may not reach across hosts on a
  network file system, so whether that run is alive cannot be known here: refused, naming the
  flag, which the user passes once they know it has ended.

``--take-over-work-dir`` takes the lock whatever holds it (the other run, if alive, keeps
training into the same folder: the flag is for runs known to be gone).
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time

from ..echo import clip
from ..errors import RunnerConfigError, WorkDirInUseError

LOCK_NAME = ".visdet-mmext.lock"
TAKE_OVER = "--take-over-work-dir"


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc; None where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, start_ticks) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False  # no process to ask about (os.kill(-1, 0) would ask about all)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return start_ticks is None or _start_ticks(pid) in (None, start_ticks)


def _record() -> dict:
    return dict(pid=os.getpid(), host=socket.gethostname(), start_ticks=_start_ticks(os.getpid()),
                started=datetime.datetime.now().isoformat(timespec="seconds"),
                command=clip(" ".join(sys.argv), 500))


def describe(owner: dict) -> str:
    return (f"PID {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}: "
            f"{owner.get('command')}")


def _flock(fd: int) -> bool | None:
    """Take the exclusive flock without waiting: True, False (held elsewhere), or None where
    the file system has no flock."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


class WorkDirLock:
    """``with WorkDirLock(work_dir, take_over=False):`` one run's hold on ``work_dir``."""

    def __init__(self, work_dir: str, take_over: bool = False):
        self.work_dir, self.take_over = work_dir, take_over
        self.path = os.path.join(work_dir, LOCK_NAME)
        self.fd: int | None = None
        self.notes: list[str] = []

    def __enter__(self) -> "WorkDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _open(self) -> int:
        try:
            os.makedirs(self.work_dir, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunnerConfigError(
                f"work_dir {self.work_dir} cannot be written ({error.strerror}): pass --work-dir "
                "with a folder you can write to.") from error

    def _read(self, fd: int) -> dict:
        """The record in the lock file; the holder may be between locking and writing it."""
        for _ in range(50):
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 1 << 16).decode(errors="replace")
            if text.strip():
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    return dict(command=f"(unreadable lock record: {clip(text, 200)})")
            time.sleep(0.01)
        return {}

    def acquire(self) -> None:
        while True:
            fd = self._open()
            held = _flock(fd)
            if held is True and not self._same_file(fd):
                os.close(fd)  # replaced by a run taking over in between: lock the new one
                continue
            owner = self._read(fd) if held is not True or os.fstat(fd).st_size else {}
            refusal = self._refusal(held, owner)
            if refusal and not self.take_over:
                os.close(fd)
                raise WorkDirInUseError(refusal)
            if refusal or (owner and owner.get("pid") != os.getpid()):
                self.notes.append(
                    f"Took over work dir {self.work_dir} from {describe(owner)}"
                    + (f" ({TAKE_OVER})." if refusal else ": that run ended without giving it "
                       "back."))
            if held is False:  # the other run keeps its flock: lock a new file in its place
                os.close(fd)
                os.unlink(self.path)
                self.take_over = False  # the new file is ours to take
                continue
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(_record()).encode())
            os.fsync(fd)
            self.fd = fd
            return

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _refusal(self, held: bool | None, owner: dict) -> str | None:
        """Why this run may not take the lock (None: it may)."""
        if held is False:
            state = "another run is training into it"
        elif not owner or (held and owner.get("pid") == os.getpid()):
            return None
        elif owner.get("host") != socket.gethostname():
            state = ("its lock was taken on another host, and whether that run is still alive "
                     "cannot be checked from here")
        elif _alive(owner.get("pid"), owner.get("start_ticks")):
            state = "another run is training into it"
        else:
            return None  # the run that wrote it is gone (killed before it could give it back)
        return (f"work dir {self.work_dir} is in use: {state} ({describe(owner)}; lock file "
                f"{self.path}). Two runs in one work dir delete each other's checkpoints and "
                f"write into one log. Train into another --work-dir, or wait for that run to end; "
                f"if it is no longer running, rerun with {TAKE_OVER}.")

    def release(self) -> None:
        """Give the lock back (remove the file only while it is still this run's)."""
        if self.fd is None:
            return
        if self._same_file(self.fd):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
