"""What `mqi doctor` reports, one finding per check, and the checks any backend shares. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mqi_es.core.remote import Observation, Seen

CLOCK_WARN_SECONDS = 3.0  # larger offsets make the history mix two disagreeing clocks


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    """The result of one check: ``message`` says what was found, ``hint`` how to fix it."""

    check: str
    verdict: Verdict
    message: str
    hint: str = ""


def skipped(host: str, checks: tuple[str, ...], why: str) -> list[Finding]:
    return [Finding(f"{host}: {check}", Verdict.SKIP, why) for check in checks]


def clock_finding(host: str, observation: Observation, *, needs: str) -> Finding:
    """The host's clock as the daemon's own poll measures it (in the same round trip)."""
    check = f"{host}: clock"
    if not isinstance(observation, Seen):
        return Finding(check, Verdict.SKIP, f"needs {needs}")
    offset = observation.skew
    if offset is None:
        return Finding(check, Verdict.WARN, "the node's `date` printed no time we can read")
    measured = f"{abs(offset):.3f} s {'ahead of' if offset > 0 else 'behind'} this machine"
    precision = f"(± {observation.rtt / 2 * 1000:.0f} ms)"
    if abs(offset) > CLOCK_WARN_SECONDS:
        return Finding(
            check,
            Verdict.WARN,
            f"the node's clock is {measured} {precision}: the history mixes times of both",
            "keep both clocks synchronised (NTP: `timedatectl set-ntp true` on each)",
        )
    return Finding(check, Verdict.OK, f"the node's clock is {measured} {precision}")
