"""LogThrottle: one line per key and period, the held-back ones counted."""

from __future__ import annotations

from gateway.throttle import LogThrottle


def test_one_line_per_key_and_period_then_the_count() -> None:
    throttle = LogThrottle(every=60)
    assert throttle.admit("a") == 0
    assert [throttle.admit("a") for _ in range(3)] == [None, None, None]
    assert throttle.admit("b") == 0  # keys are independent
    throttle._last["a"] -= 61  # a period later
    assert throttle.admit("a") == 3
    assert throttle.admit("a") is None
