"""How the daemon's shell keys its remote actions: which may run at once (one per case, one
removal per host...), which back off together, which share a log line. Pure."""

from __future__ import annotations

from mqi_es.core.actions import Action, Cancel, ReadProgress, Release, RemoveFolder, RemoveTasks


def key(action: Action) -> object:
    match action:
        case Release(host=host, slot=slot):
            return ("release", host, slot)
        case Cancel(host=host, task=task, case_id=None):
            return ("cancel", host, task.id)
        case RemoveTasks(host=host):
            return ("remove tasks", host)
        case ReadProgress(host=host):
            return ("progress", host)
        case RemoveFolder(host=host, folder=folder):  # of an ended case: not its case's key
            return ("remove folder", host, folder)
        case _:
            return action.case_id  # one action per case at a time


def retry_key(action: Action) -> tuple[object, ...]:
    """Each kind of action backs off on its own: a kill never waits out a submit's delay."""
    case_id = None if isinstance(action, RemoveFolder) else getattr(action, "case_id", None)
    if case_id is not None:
        return ("case", type(action).__name__, case_id)
    return (type(action).__name__, key(action))


def said_key(action: Action) -> tuple[object, ...]:
    case_id = None if isinstance(action, RemoveFolder) else getattr(action, "case_id", None)
    return ("case", case_id) if case_id is not None else ("action", key(action))


def still_about(key: object, active: set[str]) -> bool:
    """Whether a retry or repeat key still has a subject: a case's keys end with it."""
    return not (isinstance(key, tuple) and key[:1] == ("case",) and key[-1] not in active)
