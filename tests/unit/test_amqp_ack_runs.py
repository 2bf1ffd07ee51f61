"""``_Acks``: which acks of an AMQP channel leave as one ``basic.ack`` with ``multiple``.

``multiple`` acks every unacknowledged tag up to the one named, so it may only name a
tag when every tag below it is settled: an unsettled one (an event in retry) must
stop the run.
"""

from __future__ import annotations

import pytest

from connectors.amqp import source
from connectors.amqp.source import _Acks


def test_a_contiguous_run_leaves_as_one_multiple_ack() -> None:
    acks = _Acks()
    acks.pending.update({1, 2, 3, 4})
    assert acks.plan() == (4, [])
    assert acks.floor == 4 and not acks.pending and not acks.above
    assert acks.settled(3) and not acks.settled(5)


def test_an_unsettled_tag_stops_the_run_and_the_rest_leave_alone() -> None:
    acks = _Acks()
    acks.pending.update({1, 2, 4, 5})  # 3 is still being retried
    assert acks.plan() == (2, [4, 5])
    assert acks.floor == 2 and acks.above == {4, 5}
    # 3 settles later: the floor moves past the tags already acked alone, and the
    # multiple ack names 3 itself, never a tag acked before (unknown to the broker).
    acks.pending.add(3)
    assert acks.plan() == (3, [])
    assert acks.floor == 5 and not acks.above


def test_a_run_ending_on_a_tag_settled_alone_names_the_last_pending_one() -> None:
    acks = _Acks()
    acks.above.update({2, 3})  # nacked (or acked alone) before
    acks.pending.update({1, 6})
    assert acks.plan() == (1, [6])
    assert acks.floor == 3 and acks.above == {6}


def test_nothing_pending_sends_nothing() -> None:
    acks = _Acks()
    acks.above.add(2)
    assert acks.plan() == (None, [])
    assert acks.floor == 0 and acks.above == {2}


def test_acks_piling_up_behind_a_tag_never_settled_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(source, "_MAX_ABOVE", 10)
    acks = _Acks()
    for tag in range(2, 30):  # tag 1 is never settled
        acks.pending.add(tag)
        assert acks.plan() == (None, [tag])
        assert len(acks.above) <= 10  # bounded, not one per message for ever
    assert acks.floor == 0
