"""A rename that never replaces: renameat2(2) with RENAME_NOREPLACE, where the kernel, the C library and
the filesystem have it (Linux 3.15+, ext4 and XFS; glibc has the wrapper from 2.28, NethServer 7's 2.17
has not, so the system call is made by its number there), else a check for the name and rename(2).

Why: a flag change is a rename of the message, and 10 % flags on the medium corpus is 20 000 of
them. The check costs a lookup of a name that is not there (measured: a few µs each, a tenth of the
rename's own cost), and between the check and the rename the mail server could create the name; the
flag closes that window and saves the lookup.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

AT_FDCWD = -100
RENAME_NOREPLACE = 1
# renameat2's number where glibc has no wrapper for it (asm/unistd_64.h and asm-generic/unistd.h).
_SYSCALL_NR = {"x86_64": 316, "aarch64": 276}


def _bind(symbol: bool = True):
    """The C library's renameat2, else (or if not ``symbol``) the system call by its number, else None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "renameat2", None) if symbol else None
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    # The numbers are the 64-bit ABIs': a 32-bit Python on an x86_64 kernel (i386: 353; x32: another
    # base) would call something else by them, so it checks then renames instead.
    nr = _SYSCALL_NR.get(platform.machine()) if ctypes.sizeof(ctypes.c_void_p) == 8 else None
    call = getattr(libc, "syscall", None)
    if nr is None or call is None:
        return None
    call.restype = ctypes.c_long

    def via_syscall(olddir, old, newdir, new, flags):
        return call(ctypes.c_long(nr), ctypes.c_int(olddir), ctypes.c_char_p(old), ctypes.c_int(newdir),
                    ctypes.c_char_p(new), ctypes.c_uint(flags))  # fmt: skip

    return via_syscall


_renameat2 = _bind()


def exists_error(dst) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "the new name already exists on the destination", dst)


def rename_noreplace(src, dst) -> None:
    """Rename ``src`` to ``dst``; FileExistsError if ``dst`` exists (then neither is changed)."""
    global _renameat2
    fn = _renameat2
    if fn is not None:
        # The executor's paths are bytes already: fsencode is a Python call each, twice per flag change.
        bsrc = src if type(src) is bytes else os.fsencode(src)
        bdst = dst if type(dst) is bytes else os.fsencode(dst)
        if fn(AT_FDCWD, bsrc, AT_FDCWD, bdst, RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise exists_error(dst)
        # ENOSYS, EINVAL: no such call or flag here; EPERM: a sandbox's filter that does not know the call.
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
            raise OSError(err, os.strerror(err), src, None, dst)
    if os.path.lexists(dst):
        raise exists_error(dst)
    os.rename(src, dst)
    if fn is not None:
        _renameat2 = None  # rename(2) did what renameat2 refused: check, then rename, from now on
