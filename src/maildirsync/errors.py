"""Errors a person can act on. Each carries the process exit code it ends a run with; the CLI only
renders them. The codes are documented in README.md."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # at least one user failed; the others were synced
EXIT_USAGE = 2  # bad command line or input: nothing was done
EXIT_PENDING = 3  # dry run only: the plan has changes to apply
EXIT_BUSY = 4  # another run holds the index
EXIT_NO_USERS = 67  # not one source user has a mailbox on the destination (sysexits' EX_NOUSER)
EXIT_INTERRUPTED = 130  # Ctrl-C: the message in flight was finished and the index committed


class MaildirsyncError(Exception):
    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class UsageError(MaildirsyncError):
    exit_code = EXIT_USAGE


class NotAMaildir(MaildirsyncError):
    exit_code = EXIT_USAGE


class NoMailboxPaired(MaildirsyncError):
    """Not one source user could be paired with a destination mailbox: nothing was synced. ``notes`` say,
    user by user, what is missing and what to do."""

    exit_code = EXIT_NO_USERS

    def __init__(self, message: str, notes: list[str]):
        super().__init__(message)
        self.notes = notes


class IndexBusy(MaildirsyncError):
    exit_code = EXIT_BUSY


class IndexError_(MaildirsyncError):
    """The index cannot be opened or written (disk full, permissions): nothing can be recorded."""

    exit_code = EXIT_FAILED


class ConnectionFailed(MaildirsyncError):
    """The source could not be reached or logged into; nothing was synced."""

    exit_code = EXIT_FAILED


def disk_full_reason(e: OSError) -> str | None:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the destination disk is full; free space and run again"
    return None
