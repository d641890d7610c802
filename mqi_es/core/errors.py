"""Exception tree of MQI Communicator.

MqiError                      root: callers catch this one
├── ConfigError               the configuration cannot be used as written
├── LogRefused                the event log is missing, unreadable, or not the views' log
├── StoreUnreachable          the event store's server cannot be reached (nothing is known)
├── Fenced                    a former leader's save: another daemon leads now
├── CaseError                 a command about a case cannot be carried out
│   ├── CaseNotFound
│   ├── NameClash             a name that differs from a registered case's only in form
│   └── InvalidTransition     the case is not in a state where this makes sense
├── SlotError
│   ├── SlotNotFound
│   └── SlotUnavailable       held by another case, quarantined or busy remotely
├── AlarmNotFound             no alarm with that number or id
└── ConcurrentUpdate          another process recorded a conflicting fact first
"""

from __future__ import annotations


class MqiError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(MqiError):
    """Raised when the configuration is malformed, inconsistent or refers to unusable paths."""


class LogRefused(MqiError):
    """Raised when the event log cannot be trusted as the record these views were built
    from: missing, unreadable, emptied, replaced by another log or by an older copy, or
    replaced while a daemon writes to it. Nothing is written, nothing is started."""


class StoreUnreachable(MqiError):
    """Raised when the event store's server (PostgreSQL) cannot be reached: nothing about
    the log is known, so nothing is concluded from it."""


class Fenced(MqiError):
    """Raised when a daemon that led records a fact after its term ended (another daemon
    took the lease over): nothing was saved, and this daemon must stop leading."""


class CaseError(MqiError):
    """Raised when a command about a case cannot be carried out."""


class CaseNotFound(CaseError):
    """Raised when no case with the given id has been registered."""


class NameClash(CaseError):
    """Raised when a case name differs from a registered case's only by Unicode
    normalisation (or by letter case, where a node's file system folds case)."""

    def __init__(self, name: str, registered: str) -> None:
        super().__init__(
            f"its name differs from that of case {registered!r} only in Unicode form or letter "
            "case: both would look the same in every listing; rename one of them"
        )
        self.name = name
        self.registered = registered


class InvalidTransition(CaseError):
    """Raised when a case or slot is not in a state where the command makes sense."""


class SlotError(MqiError):
    """Raised when a GPU slot command cannot be carried out."""


class SlotNotFound(SlotError):
    """Raised when no GPU slot with the given host and name is registered."""


class SlotUnavailable(SlotError):
    """Raised when a GPU slot is held by another case, quarantined or busy remotely."""


class AlarmNotFound(MqiError):
    """Raised when no alarm with the given number or id has been raised."""


class NotificationNotFound(MqiError):
    """Raised when no notification with the given id is due."""


class ConcurrentUpdate(MqiError):
    """Raised when another writer recorded a conflicting event first (nothing was saved)."""
