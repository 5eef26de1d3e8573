"""Errors of the importer, each with the exit code the command line returns.

Exit codes (see :mod:`importer.cli`):

* ``1`` -- the job ran and something failed (an event handler, an extraction
  that hit a full disk, a missing helper program such as ``dar``);
* ``2`` -- the input cannot be used (bad arguments, an unsafe, corrupt or
  truncated archive, a directory that is not an exploded backup).

Every error carries a message an administrator can act on; ``hint`` says what
to do next. The command line prints them without a traceback.
"""

from __future__ import annotations

from importer import EXIT_FAILED, EXIT_USAGE


class ImporterError(Exception):
    """Base class: ``str(err)`` is the message, ``err.hint`` the next step."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class BadInputError(ImporterError):
    """The input (arguments, paths, archive) cannot be used: exit 2."""

    exit_code = EXIT_USAGE


class UnsafeArchiveError(BadInputError):
    """An archive member would escape DIR or is a device/fifo: nothing is extracted."""

    def __init__(self, member: str, reason: str, hint: str | None = None) -> None:
        self.member = member
        self.reason = reason
        super().__init__(
            f"unsafe archive member {member!r}: {reason}; nothing was extracted",
            hint
            or "this archive was not made by SME Server's backup, or it was tampered with; "
            "check where it came from",
        )


class CorruptArchiveError(BadInputError):
    """The archive is truncated or corrupt; ``member`` names where it broke."""

    def __init__(
        self, member: str | None, detail: str, hint: str | None = None, at_end: bool = False
    ) -> None:
        self.member = member
        if at_end:
            where = f"(found at its end, after the last member {member!r})"
        else:
            where = f"in member {member!r}" if member else "before its first member could be read"
        super().__init__(
            f"archive is truncated or corrupt {where}: {detail}",
            hint or "copy the backup again from the source server and check its size",
        )


class DirNotEmptyError(BadInputError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"directory {path} is not empty",
            "explode into an empty directory, or pass --force to extract over its content",
        )


class NotEnoughSpaceError(ImporterError):
    """Exit 1: the host lacks room; nothing was extracted."""


class ToolMissingError(ImporterError):
    """A helper program is not installed (exit 1); the hint names the package."""


class ExtractionFailedError(ImporterError):
    """Writing the exploded tree failed (I/O error, full disk): exit 1."""


class BusyError(ImporterError):
    """Another ``maildirsync-import`` run holds the tree: exit 4, as for an index in use."""

    exit_code = 4
