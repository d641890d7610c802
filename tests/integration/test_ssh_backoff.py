"""The reconnect schedule: exponential, capped, full jitter (a pure function)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mqi_es.adapters.ssh.connection import backoff_delay


def test_ceiling_doubles_from_one_second_then_stays_at_the_cap() -> None:
    ceilings = [backoff_delay(n, cap=60.0, rand=lambda: 1.0) for n in range(1, 10)]

    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_very_long_outage_stays_at_the_cap() -> None:
    assert backoff_delay(100_000, cap=60.0, rand=lambda: 1.0) == 60.0


def test_no_failure_means_no_wait() -> None:
    assert backoff_delay(0, cap=60.0, rand=lambda: 1.0) == 0.0


def test_jitter_scales_the_whole_interval() -> None:
    assert backoff_delay(4, cap=60.0, rand=lambda: 0.25) == 2.0
    assert backoff_delay(4, cap=60.0, rand=lambda: 0.0) == 0.0


@given(
    failures=st.integers(min_value=-5, max_value=10_000),
    cap=st.floats(min_value=0.1, max_value=3600),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_is_never_negative_nor_above_the_cap(
    failures: int, cap: float, jitter: float
) -> None:
    delay = backoff_delay(failures, cap=cap, rand=lambda: jitter)

    assert 0.0 <= delay <= cap
