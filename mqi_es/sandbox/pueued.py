"""The stand-in pueue daemon: a small task runner behind a Unix socket.

Run as ``python -m mqi_es.sandbox.pueued --pueue-dir DIR`` (``SandboxNode`` does it). It
behaves like pueued where this project depends on it:

* a task runs as ``sh -c "<command>"`` in its working directory, as the leader of its own
  process group, with the ``add`` client's environment plus ``PUEUE_GROUP`` and
  ``PUEUE_WORKER_ID``; stdout and stderr go to ``task_logs/<id>.log``;
* groups run ``parallel_tasks`` tasks at once (0: no limit); queued tasks start in id order;
* results are Success, Failed(code), FailedToSpawn(message) or Killed; ``kill`` answers at
  once and the status flips when the killed process group is gone; ``remove`` forgets
  queued and finished tasks and refuses running ones;
* ids are max(existing)+1, so they come back after ``clean``;
* the state is saved on every change; at start-up Running tasks become Done/Killed and
  groups with queued tasks are paused until ``start -g``. As with pueued, the processes of
  tasks a crashed daemon left running are not stopped (they run on, orphaned), and with the
  v3 dialect such a task keeps ``"end":null`` (pueue 3.1.2 does that: see
  ``tests/data/pueue-samples/real-3.1.2``);
* v3 only: a task that fails to spawn has no log (pueue 3 removes it), so ``log`` shows
  pueue's "Failed to get log file handle" error; v4 writes the spawn error into the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mqi_es.sandbox import human
from mqi_es.sandbox.dialect import Dialect, read_dialect
from mqi_es.sandbox.faults import corrupted_reply, read_faults
from mqi_es.sandbox.layout import PueueFiles
from mqi_es.sandbox.procs import exit_with_parent, forget_group, keep_as_orphans, record_group
from mqi_es.sandbox.protocol import Reply, SocketTaken, connect, short_socket_path
from mqi_es.sandbox.render import groups_json, log_json, status_json
from mqi_es.sandbox.state import DEFAULT_GROUP, Group, PueueState, Task, TaskResult
from mqi_es.sandbox.task_output import log_text, rust_os_error
from mqi_es.sandbox.timestamps import now_ns

log = logging.getLogger("mqi_es.sandbox.pueued")

DEFAULT_LOG_LINES = 15
KILL_GRACE_SECONDS = 10.0

Handler = Callable[[dict[str, Any]], Awaitable[Reply]]


@dataclass(slots=True)
class _Child:
    process: subprocess.Popen[bytes]
    group: str
    worker: int
    pidfd: int
    exited: asyncio.Future[None]


class Pueued:
    def __init__(self, files: PueueFiles, dialect: Dialect) -> None:
        self._files = files
        self._dialect = dialect
        self._state = PueueState()
        self._children: dict[int, _Child] = {}
        self._killed_by_user: set[int] = set()
        self._holding = False  # during reset and shutdown nothing new starts
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._handlers: dict[str, Handler] = {
            "add": self._add,
            "status": self._status,
            "kill": self._kill,
            "remove": self._remove,
            "start": self._start,
            "group": self._groups,
            "group add": self._group_add,
            "parallel": self._parallel,
            "log": self._log,
            "clean": self._clean,
            "reset": self._reset,
        }

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT; then kill every task, save and remove the socket."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        self._claim_socket()
        for folder in (self._files.task_logs, self._files.process_groups):
            folder.mkdir(mode=0o700, exist_ok=True)
        orphans = keep_as_orphans(self._files.process_groups)
        if orphans:
            log.warning("%d task(s) of a previous daemon still run, orphaned", len(orphans))
        self._state = PueueState.load(self._files.state)
        self._state.restore_after_restart(None if self._dialect == "v3" else now_ns())
        self._save()
        with short_socket_path(self._files.socket) as name:
            server = await asyncio.start_unix_server(self._serve, path=name)
        self._files.pid.write_text(f"{os.getpid()}\n")
        log.info("daemon %d listening", os.getpid())
        self._schedule()
        try:
            await self._stop.wait()
        finally:
            server.close()
            self._holding = True
            await self._kill_and_wait(list(self._children))
            self._save()
            self._files.socket.unlink(missing_ok=True)
            self._files.pid.unlink(missing_ok=True)
            log.info("daemon %d stopped", os.getpid())

    def _claim_socket(self) -> None:
        """Remove a stale socket file, unless a live daemon still answers on it."""
        try:
            probe = connect(self._files.socket)
        except OSError:
            self._files.socket.unlink(missing_ok=True)
            return
        probe.close()
        raise SocketTaken(f"a daemon already answers on {self._files.socket}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:  # a readiness probe: connected and left
                return
            request = json.loads(line)
            handler = self._handlers.get(request.get("cmd"))
            if handler is None:
                writer.write(Reply(stderr=f"unknown request: {line!r}\n", code=2).encode())
                return
            faults = read_faults(self._files.faults)
            delay = faults.delay_for(request["cmd"])
            if delay:
                await asyncio.sleep(delay)
            async with self._lock:
                reply = await handler(request)
            if request["cmd"] == "status":
                reply = corrupted_reply(reply, faults)
            writer.write(reply.encode())
            await writer.drain()
        except ConnectionError:
            log.info("a client went away before its answer")
        finally:
            writer.close()

    # -- commands -------------------------------------------------------------------------

    async def _add(self, request: dict[str, Any]) -> Reply:
        group = request["group"] or DEFAULT_GROUP
        if group not in self._state.groups:
            return human.missing_group(group, self._state.groups)
        enqueued_at = now_ns()
        task = Task(
            id=self._state.next_task_id(),
            created_at=now_ns(),
            command=request["command"],
            path=request["path"],
            envs=request["envs"],
            group=group,
            label=request["label"],
            enqueued_at=enqueued_at,
        )
        self._state.tasks[task.id] = task
        self._save()
        self._schedule()
        if request["print_task_id"]:
            return Reply(stdout=f"{task.id}\n")
        text = f"New task added (id {task.id}).\n"
        if self._state.groups[group].status == "Paused":
            text += "The group of this task is currently paused!\n"
        return Reply(stdout=text)

    async def _status(self, request: dict[str, Any]) -> Reply:
        if request["json"]:
            text = status_json(self._state, self._dialect, group=request["group"]) + "\n"
        else:
            text = human.status_table(self._state, request["group"])
        return Reply(stdout=text)

    async def _kill(self, request: dict[str, Any]) -> Reply:
        if request["task_ids"]:
            ids = request["task_ids"]
            running = [i for i in ids if i in self._children]
            for task_id in running:
                self._signal_kill(task_id)
            failing = [i for i in ids if i not in self._children]
            return human.task_action("Tasks are being killed", running, failing)
        if request["all"]:
            targets = list(self._state.groups)
            text = "All tasks are being killed. All groups will be paused!!!\n"
        else:
            group = request["group"] or DEFAULT_GROUP
            if group not in self._state.groups:
                return human.missing_group(group, self._state.groups)
            targets = [group]
            text = (
                f'All tasks of group "{group}" are being killed. The group will also be paused!!!\n'
            )
        for name in targets:
            self._state.groups[name].status = "Paused"
        for task_id, child in list(self._children.items()):
            if child.group in targets:
                self._signal_kill(task_id)
        self._save()
        return Reply(stdout=text)

    async def _remove(self, request: dict[str, Any]) -> Reply:
        """Forget tasks that do not run; a running task has to be killed first."""
        ids = request["task_ids"]
        removable = [
            i for i in ids if i in self._state.tasks and self._state.tasks[i].phase != "Running"
        ]
        for task_id in removable:
            self._state.tasks.pop(task_id, None)  # an id given twice is removed once
            self._files.task_log(task_id).unlink(missing_ok=True)
        self._save()
        failing = [i for i in ids if i not in removable]
        return human.task_action("Tasks removed from list", removable, failing)

    async def _start(self, request: dict[str, Any]) -> Reply:
        if request["task_ids"]:
            ids = request["task_ids"]
            queued = [i for i in ids if i in self._state.tasks and self._is_queued(i)]
            for task_id in queued:
                self._spawn(self._state.tasks[task_id])
            failing = [i for i in ids if i not in queued]
            return human.task_action("Tasks have been started/resumed", queued, failing)
        if request["all"]:
            targets = list(self._state.groups)
            text = "All groups are being resumed.\n"
        else:
            group = request["group"] or DEFAULT_GROUP
            if group not in self._state.groups:
                return human.missing_group(group, self._state.groups)
            targets = [group]
            text = f'Group "{group}" is being resumed.\n'
        for name in targets:
            self._state.groups[name].status = "Running"
        self._save()
        self._schedule()
        return Reply(stdout=text)

    async def _groups(self, request: dict[str, Any]) -> Reply:
        if request["json"]:
            return Reply(stdout=groups_json(self._state) + "\n")
        return Reply(stdout=human.group_list(self._state.groups))

    async def _group_add(self, request: dict[str, Any]) -> Reply:
        name = request["name"]
        if name in self._state.groups:
            return Reply(stderr=f'Group "{name}" already exists\n', code=1)
        parallel = 1 if request["parallel"] is None else request["parallel"]
        self._state.groups[name] = Group(parallel_tasks=parallel)
        self._save()
        if self._dialect == "v3":
            return Reply(stdout=f'Group "{name}" is being created\n')
        return Reply(stdout=f'New group "{name}" has been created\n')

    async def _parallel(self, request: dict[str, Any]) -> Reply:
        if request["parallel_tasks"] is None:
            return Reply(stdout=human.group_list(self._state.groups))
        name = request["group"] or DEFAULT_GROUP
        if name not in self._state.groups:
            return human.missing_group(name, self._state.groups)
        self._state.groups[name].parallel_tasks = request["parallel_tasks"]
        self._save()
        self._schedule()
        return Reply(stdout=f'Parallel tasks setting for group "{name}" adjusted\n')

    async def _log(self, request: dict[str, Any]) -> Reply:
        selected = request["task_ids"] or sorted(self._state.tasks)
        lines = None if request["full"] else request["lines"]
        if lines is None and not request["full"]:
            lines = DEFAULT_LOG_LINES
        outputs = {
            i: log_text(self._files.task_log(i), lines) for i in selected if i in self._state.tasks
        }
        if request["json"]:
            return Reply(stdout=log_json(self._state, outputs, self._dialect) + "\n")
        return human.log_text(self._state, outputs)

    async def _clean(self, request: dict[str, Any]) -> Reply:
        for task_id, task in list(self._state.tasks.items()):
            if task.phase != "Done":
                continue
            assert task.result is not None
            if request["successful_only"] and task.result.kind != "Success":
                continue
            if request["group"] is not None and task.group != request["group"]:
                continue
            del self._state.tasks[task_id]
            self._files.task_log(task_id).unlink(missing_ok=True)
        self._save()
        successful = " successfully" if request["successful_only"] else ""
        scope = f" from group '{request['group']}'" if request["group"] is not None else ""
        return Reply(stdout=f"All{successful} finished tasks have been removed{scope}\n")

    async def _reset(self, request: dict[str, Any]) -> Reply:
        """Kill everything, then forget every task; ids start again at 0."""
        self._holding = True
        try:
            await self._kill_and_wait(list(self._children))
            for task_id in self._state.tasks:
                self._files.task_log(task_id).unlink(missing_ok=True)
            self._state.tasks.clear()
            for group in self._state.groups.values():
                group.status = "Running"
            self._save()
        finally:
            self._holding = False
        return Reply(stdout="Everything is being reset right now.\n")

    # -- processes ------------------------------------------------------------------------

    def _is_queued(self, task_id: int) -> bool:
        return self._state.tasks[task_id].phase == "Queued"

    def _schedule(self) -> None:
        """Start queued tasks while their groups run and have free slots (pueue's order)."""
        if self._holding:
            return
        while (task := self._next_startable()) is not None:
            self._spawn(task)

    def _next_startable(self) -> Task | None:
        for task_id in sorted(self._state.tasks):
            task = self._state.tasks[task_id]
            group = self._state.groups[task.group]
            if task.phase != "Queued" or group.status != "Running":
                continue
            busy = sum(1 for child in self._children.values() if child.group == task.group)
            if group.parallel_tasks == 0 or busy < group.parallel_tasks:
                return task
        return None

    def _spawn(self, task: Task) -> None:
        busy_workers = {c.worker for c in self._children.values() if c.group == task.group}
        worker = next(n for n in range(len(busy_workers) + 1) if n not in busy_workers)
        envs = {**task.envs, "PUEUE_GROUP": task.group, "PUEUE_WORKER_ID": str(worker)}
        start = now_ns()
        with self._files.task_log(task.id).open("wb") as output:
            try:
                process = subprocess.Popen(
                    ["sh", "-c", task.command],
                    cwd=task.path,
                    env=envs,
                    stdin=subprocess.PIPE,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                message = f"Failed to spawn child {task.id} with err: {rust_os_error(error)}"
                if self._dialect == "v3":  # pueue 3 removes the log (clean_log_handles)
                    self._files.task_log(task.id).unlink(missing_ok=True)
                else:
                    notice = f"Pueue error, failed to spawn task. Check your command.\n{message}"
                    output.write(notice.encode())
                task.start = start
                task.finish(TaskResult("FailedToSpawn", message=message), now_ns())
                log.info("task %d failed to spawn", task.id)
                self._save()
                return
        pidfd = os.pidfd_open(process.pid)
        loop = asyncio.get_running_loop()
        child = _Child(process, task.group, worker, pidfd, loop.create_future())
        self._children[task.id] = child
        loop.add_reader(pidfd, self._reap, task.id)
        record_group(self._files.process_groups, task.id, process.pid)
        task.envs = envs
        task.phase = "Running"
        task.start = start
        log.info("task %d started in group %s (worker %d)", task.id, task.group, worker)
        self._save()

    def _reap(self, task_id: int) -> None:
        child = self._children.pop(task_id)
        asyncio.get_running_loop().remove_reader(child.pidfd)
        os.close(child.pidfd)
        code = child.process.wait()
        if child.process.stdin is not None:
            child.process.stdin.close()
        forget_group(self._files.process_groups, task_id)
        if task_id in self._killed_by_user or code < 0:
            result = TaskResult("Killed")
        elif code == 0:
            result = TaskResult("Success")
        else:
            result = TaskResult("Failed", exit_code=code)
        self._killed_by_user.discard(task_id)
        self._state.tasks[task_id].finish(result, now_ns())
        log.info("task %d finished: %s", task_id, result.kind)
        self._save()
        child.exited.set_result(None)
        self._schedule()

    def _signal_kill(self, task_id: int) -> None:
        """SIGKILL the task's whole process group; the status flips when it is reaped."""
        self._killed_by_user.add(task_id)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._children[task_id].process.pid, signal.SIGKILL)

    async def _kill_and_wait(self, task_ids: Iterable[int]) -> None:
        waiting = []
        for task_id in task_ids:
            self._signal_kill(task_id)
            waiting.append(self._children[task_id].exited)
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=KILL_GRACE_SECONDS)
            if pending:
                log.error("%d task(s) did not die within %s s", len(pending), KILL_GRACE_SECONDS)

    def _save(self) -> None:
        self._state.save(self._files.state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqi_es.sandbox.pueued")
    parser.add_argument("--pueue-dir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, help="exit when this process dies")
    args = parser.parse_args(argv)
    os.umask(0o077)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.parent_pid is not None and not exit_with_parent(args.parent_pid):
        return 1
    files = PueueFiles(args.pueue_dir.resolve())
    try:
        asyncio.run(Pueued(files, read_dialect(files.settings)).run())
    except SocketTaken as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
