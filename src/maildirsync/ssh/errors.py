"""What can go wrong talking to the source over SSH, each with an exit code and a message that says
what to do. All are :class:`~maildirsync.transport.SourceError`, so the engine reports them as a failed
user; the CLI may stop the whole run on the ones raised while connecting."""

from __future__ import annotations

from ..transport import SourceError

# sysexits(3) values: scripts around the tool can tell "server down" from "fix the key".
EX_UNAVAILABLE = 69
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78


class SshError(SourceError):
    exit_code = EX_UNAVAILABLE


class ConnectError(SshError):
    """No TCP connection or no SSH session could be set up (refused, unreachable, timed out)."""


class NegotiationError(SshError):
    """Client and server share no key exchange, cipher, MAC or host key algorithm."""

    exit_code = EX_PROTOCOL


class AuthError(SshError):
    exit_code = EX_NOPERM


class KeyFileError(SshError):
    """The client key is missing or unreadable."""

    exit_code = EX_CONFIG


class HostKeyError(SshError):
    exit_code = EX_NOPERM


class HostKeyUnknown(HostKeyError):
    pass


class HostKeyChanged(HostKeyError):
    pass


class ConnectionLostError(SshError):
    """The connection dropped mid-run and could not be re-established within the retry budget."""


class ProtocolError(SshError):
    """The source answered something this tool cannot trust (a tar stream that does not match the
    request, a find listing that does not parse)."""

    exit_code = EX_PROTOCOL


class SetupError(SshError):
    exit_code = EX_NOPERM
