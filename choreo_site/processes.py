"""Processes that must not outlive their parent.

`manage.py up` starts every part of the platform as a child. However `up` ends (a signal,
SIGKILL, a crash), none of them may keep running: the kernel sends each one SIGKILL when
its parent dies (prctl PR_SET_PDEATHSIG). The same holds one level down, for the RQ work
horse and the web server's worker processes, so the whole tree goes with its root.
"""

from __future__ import annotations

import ctypes
import os
import signal

import rq

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits.

    Call it in the child right after fork (a `preexec_fn`, a post-fork hook), with the
    parent's pid as the parent saw it. If the parent already died before the call, exit at
    once: the signal would never come.
    """
    parent = os.getppid() if parent is None else parent
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    if os.getppid() != parent:
        os._exit(1)


def child_of_this_process():
    """A `preexec_fn` for the platform's own processes: a session of their own, so a Ctrl-C
    at the terminal reaches only `up` (which stops them in order), and death with `up`."""
    parent = os.getpid()

    def preexec() -> None:
        os.setsid()
        die_with_parent(parent)

    return preexec


class Worker(rq.Worker):
    """RQ's forking worker, whose work horse dies with it. RQ puts the horse in a process
    group of its own, so nothing else would stop it when the worker is SIGKILLed; a build
    it was running is then failed by the reaper like any other orphan."""

    def main_work_horse(self, job, queue):
        die_with_parent()
        return super().main_work_horse(job, queue)
