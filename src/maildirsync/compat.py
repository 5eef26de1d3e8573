"""What differs between the Pythons this runs on: 3.8 (NethServer 7's rh-python38) to the newest."""

from __future__ import annotations

import os
import sys

# Slotted dataclasses (3.10+) keep per-message objects small; on older Pythons they are plain ones.
SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


def randbytes(rng, n: int) -> bytes:
    """``random.Random.randbytes`` (3.9+), byte for byte: the same seed gives the same corpus everywhere."""
    return rng.getrandbits(n * 8).to_bytes(n, "little") if n else b""


def exit_code(status: int) -> int:
    """``os.waitstatus_to_exitcode`` (3.9+): the exit code, or minus the signal that killed the child."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
