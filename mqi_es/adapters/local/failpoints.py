"""Crash injection for tests: ``MQI_FAILPOINT=<step>`` makes the process die at that step.

The process exits at once (``os._exit``: no cleanup, no flushing, like a power cut or a
``kill -9``), so the crash tests can prove that a restart recovers from every step.
"""

from __future__ import annotations

import os

ENV = "MQI_FAILPOINT"
EXIT_CODE = 86

# Every recorded fact is also a step, named ``after:<command type>``; these are the ones
# the crash tests go through, in lifecycle order.
STEPS = (
    "after:StartSubmission",  # the attempt and its GPU are recorded, nothing uploaded
    "after:RecordUpload",  # the case is on the node, the task not submitted
    "after_submit",  # the submission returned; nothing recorded about the task yet
    "after:RecordEnqueued",  # the task id is recorded
    "after:RecordStarted",
    "after:RecordRemoteSuccess",  # success recorded, GPU released, results not fetched
    "during_download",  # part of the results downloaded
    "after_download",  # results complete locally, completion not recorded
)


def failpoint(step: str) -> None:
    if os.environ.get(ENV) == step:
        os._exit(EXIT_CODE)
