"""One writer per run directory: :class:`RunLock`, an exclusive ``fcntl.flock`` on
``<logdir>/.lock`` that :func:`pvm_mbrl.experiment.run` holds from start to end.

The holder writes its pid, host and start time into the file; a second writer is refused at
once with :class:`RunDirLocked` naming them. The kernel drops the lock when the holder's file
is closed or the process dies (even by ``kill -9``), so a leftover ``.lock`` never blocks a
later run. ``flock`` locks belong to an open file description, so a second :class:`RunLock` on
the same directory conflicts within one process too. On network filesystems ``flock`` may
only exclude processes of one host (NFS: depends on the mount).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pathlib
import socket

LOCK_FILE = ".lock"


class RunDirLocked(RuntimeError):
    """Another process (or another :class:`RunLock`) holds the run directory."""


class RunLock:
    """``with RunLock(logdir):`` holds ``logdir`` (created if missing) for one writer."""

    def __init__(self, logdir: str | pathlib.Path):
        self.logdir = pathlib.Path(logdir)
        self.path = self.logdir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.logdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise RunDirLocked(
                f"{self.logdir} is in use by another run ({holder}; lock file {self.path}); "
                f"wait for it to end or choose another logdir"
            ) from None
        holder = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # before unlocking, so that a next holder's details survive
        finally:
            os.close(fd)  # closing the only descriptor drops the lock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        h = json.loads(raw)
        return f"pid {h['pid']} on host {h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown: its lock file holds no details yet"
