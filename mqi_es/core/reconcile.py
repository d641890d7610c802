"""The decision core: from what is recorded and what is seen, what to record and do next.

``reconcile`` is a pure function of the views, this cycle's observations of each host, the
time and the policy. It reads no clock, does no I/O and draws no random numbers, so every
rule of the lifecycle can be tested exhaustively. It is level-triggered: it looks at the
whole state every cycle and asks for what is missing, so running it twice on the same
input asks for the same things, and a crash anywhere is recovered by the next run.

Rules, per case (only on a host seen this cycle: an unseen host changes nothing):

- submitting: its task found by label -> record it as enqueued (this adopts the task
  after a crash too). Not found in a snapshot taken after any submission could still
  land -> it never reached the queue -> abandon the attempt (uncharged); the next cycle
  submits a new attempt. Never a second task for one attempt.
- queued/running/killing: the task is identified by label and ``created_at`` (ids are
  reused after ``clean``). Running -> record the start; over its timeout -> kill.
  Done/success -> remote success, then fetch. Failed / failed to spawn -> fail with
  the log's tail. Killed when we asked -> timeout or cancelled; killed when we did not
  (the queue service restarted), lost -> infrastructure: a new attempt with backoff, until
  ``max_attempts``. Missing for ``missing_grace`` good snapshots -> lost, the same way.
  A kill not confirmed within ``kill_confirm_timeout`` -> fail and quarantine the slot.
- Free slots go to waiting cases in arrival order (not on a node whose disk would keep
  less than ``node_disk_reserve`` with the case on it); a slot running tasks we did not
  submit is busy, not free; a held task of ours (its slot's queue paused) is released.
- A host whose queue software cannot be used (``incompatible``) gets no case, and a case
  whose attempt started there goes back to waiting with that reason (no task can exist:
  the adapter never submits to such a node).

Progress (``progress_rules.py``): every ``progress_interval`` one read of the tails of a
host's running tasks; a reading is recorded when it reaches another tenth of the run.

Housekeeping (``housekeeping.py``): our ended tasks whose outcomes are recorded leave the
queue; an ended case's folder on the node goes once its retention is over.

Time: a task's running time is measured on the node's clock (its start and the node's
time, read in the same round trip), carried over once onto our monotonic clock; local
waits (kill confirmation, kill resends, the submit settle window) are monotonic. In a cycle
where our wall clock jumped, or a node's clock did, nothing is killed or failed for its
timing.

Alarms (``AlarmKind``) are facts too: raised when their condition starts (never again
while it stands), cleared when it has ended; one about a host not seen this cycle stays,
since nobody can tell. An alarm that stands for a moment (a failed case, a vanished task)
stays open until an operator acknowledges it. A case stalled in one state, a host down
for too long, are judged from the views; cycles too far apart raise ``cycle_overdue``.
"""

from __future__ import annotations

from datetime import datetime

from mqi_es.core.actions import Decision, Memory
from mqi_es.core.alarm_rules import (
    watch_disks,
    watch_for_stalls,
    watch_hosts,
    watch_results,
    watch_the_loop,
)
from mqi_es.core.case_rules import follow_cases
from mqi_es.core.cycle import Cycle, World
from mqi_es.core.housekeeping import keep_tidy
from mqi_es.core.policy import Policy
from mqi_es.core.progress_rules import watch_progress
from mqi_es.core.slot_rules import allocate, check_slots, observe_hosts


def reconcile(world: World, now: datetime, policy: Policy, memory: Memory) -> Decision:
    """Decide this cycle's records and actions. Pure: same input, same decision."""
    cycle = Cycle(world, now, policy, memory)
    observe_hosts(cycle)
    follow_cases(cycle)
    check_slots(cycle)
    allocate(cycle)
    watch_for_stalls(cycle)
    watch_hosts(cycle)
    watch_results(cycle)
    watch_the_loop(cycle)
    watch_disks(cycle)
    keep_tidy(cycle)
    watch_progress(cycle)
    return cycle.decision()
