"""A Kafka consumer group of gateway processes on librdkafka's mock, read from their logs.

The mock ends a rebalance as soon as the leader's SyncGroup arrives and answers every
later SyncGroup with InvalidRequestError, where Kafka answers a late follower (from
Stable) with its assignment. A follower that syncs after the leader so gets nothing
and rejoins, and the mock starts the next round only session_timeout - 1 s later. The
mock answers the leader's JoinGroup first, so on a busy machine the leader syncs first
round after round: 2 to 6 rounds in a row lost on a loaded 2-core machine, and one
scale-out run waited 60 s with assignments [None, 2]. The more members, the likelier
one is late (three members: the docker-marked tests on a real Kafka).

So a test forms a two-member group one member at a time (``form_pair``): the first
gateway alone (the mock's leader for as long as it lives, as it elects its first
member), then the second joins with the leader held (SIGSTOP) until the follower's
SyncGroup is out (``_join_second``). The gateway needs nothing of this on Kafka.

Reads the gateways' logs: the source's "assigned [...]" line and aiokafka's group
coordinator lines (INFO and ERROR).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from functools import partial

from tests.faults.brokers import frozen
from tests.faults.gateway import GatewayProcess
from tests.polling import until

__all__ = ["PARTITIONS", "assignments", "form_pair", "group_log", "settled"]

PARTITIONS = 4  # the mock's partitions per topic (tests.faults.admin)

_ASSIGNED = re.compile(r"assigned \[(.*)\]")
_REJOINING = "(Re-)joining group"  # logged right before its JoinGroup goes out
_JOINED = "Joined group"  # the JoinGroup answer; a follower's SyncGroup goes out right after
_REFUSED = "Unexpected error from SyncGroup"  # the mock's InvalidRequestError


def assignments(gateways: list[GatewayProcess]) -> list[int | None]:
    """Partitions each gateway holds after its latest assignment (None: none yet)."""
    counts: list[int | None] = []
    for gateway in gateways:
        found = _ASSIGNED.findall(gateway.current_log())
        counts.append(found[-1].count("TopicPartition(") if found else None)
    return counts


def settled(gateways: list[GatewayProcess]) -> bool:
    """Every gateway holds partitions and together they hold all of them."""
    counts = assignments(gateways)
    return all(counts) and sum(c or 0 for c in counts) == PARTITIONS


async def form_pair(
    first: GatewayProcess, start_second: Callable[[], GatewayProcess], session: float
) -> GatewayProcess:
    """The group of ``first`` (started) and the gateway ``start_second`` starts, formed
    one at a time; returns the second once both hold partitions (AssertionError, with
    their group lines, if not). ``session``: the group's session timeout, s."""
    await first.wait_started()
    alone = await until(lambda: assignments([first]) == [PARTITIONS], 60)
    assert alone, group_log(first)
    before = _rejoins(first)
    second = start_second()
    joined, _ = await asyncio.gather(
        _join_second(first, second, before, session, 90), second.wait_started()
    )
    assert joined, (assignments([first, second]), group_log(first), group_log(second))
    return second


def _rejoins(gateway: GatewayProcess) -> int:
    """How many JoinGroups the gateway sent (this run)."""
    return gateway.current_log().count(_REJOINING)


async def _join_second(
    leader: GatewayProcess, follower: GatewayProcess, before: int, session: float, seconds: float
) -> bool:
    """``follower`` joins the group of ``leader`` (its only member, so the mock's leader);
    True once both hold partitions, False after ``seconds``.

    In each round the leader is held (SIGSTOP) from its JoinGroup (``before``: its
    ``_rejoins`` before the follower started) until the follower has its JoinGroup answer
    and so sent its SyncGroup: the leader, resumed, syncs second and the round ends with
    both assigned. The hold stays under ``session`` (the group's session timeout, s):
    the mock elects 1 s before it.
    """
    members = [leader, follower]
    deadline = time.monotonic() + seconds
    while not settled(members):
        left = deadline - time.monotonic()
        # the follower's JoinGroup started a round; the leader hears of it (heartbeat)
        if left <= 0 or not await until(_grew(leader, _REJOINING, before), left):
            return False
        before = _rejoins(leader)
        joined = follower.current_log().count(_JOINED)
        refused = follower.current_log().count(_REFUSED)
        with frozen(leader.pid):
            await until(_grew(follower, _JOINED, joined), session - 0.5)
        # both hold partitions, or the follower was refused after all and rejoins
        await until(_either(partial(settled, members), _grew(follower, _REFUSED, refused)), 15)
    return True


def group_log(gateway: GatewayProcess) -> str:
    """The gateway's consumer-group lines (aiokafka's and the source's), for a failure."""
    words = (_REJOINING, _JOINED, _REFUSED, "assigned [", "revoked [", "Heartbeat")
    lines = [ln for ln in gateway.current_log().splitlines() if any(w in ln for w in words)]
    return "\n".join(lines[-30:])


def _grew(gateway: GatewayProcess, line: str, before: int) -> Callable[[], bool]:
    """Whether ``gateway`` logged ``line`` more than ``before`` times (this run)."""
    return lambda: gateway.current_log().count(line) > before


def _either(*checks: Callable[[], bool]) -> Callable[[], bool]:
    """Whether any of ``checks`` holds."""
    return lambda: any(check() for check in checks)
