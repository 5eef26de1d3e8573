"""The command's entry point: what the process settles for itself before the CLI is loaded.

Python's cyclic garbage collector walks every container object at each full collection and, at exit,
again while the interpreter tears its modules down. The modules this command imports (asyncssh and
cryptography most of all) are ~65 000 such objects that live as long as the process: walking them costs
a run that finds nothing changed about a tenth of its time (measured on the medium bench: collections
while importing ~15 ms, the teardown ~45 ms). ``long_lived`` keeps the collector off while they are made
and then out of its sight (``gc.freeze``); what the sync itself makes is collected as always.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager


@contextmanager
def long_lived():
    """What is made inside lives until the process ends: not collected meanwhile, nor walked later. (A
    freeze takes every object tracked so far, not only these: meant for a process's start, once or twice.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def few_heaps() -> None:
    """At most two malloc arenas (glibc's default is eight per core): the worker threads' freed memory is
    then given back to one heap the next allocation reuses, instead of kept in a heap per thread (6 MB of
    peak RSS on the medium bench). Before any thread starts; a no-op where libc is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the administrator's own setting
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def main() -> None:
    few_heaps()
    with long_lived():
        from . import cli
    try:
        cli.main()
    finally:
        # Everything is closed and written by now; what is left is the interpreter's teardown, which
        # would otherwise walk every object the run still holds once more.
        gc.freeze()
