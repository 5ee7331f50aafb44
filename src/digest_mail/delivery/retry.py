"""How retry works: backoff for temporary refusals, a circuit breaker for permanent ones.

A temporary failure (4xx, a dropped connection, a timeout) sends its recipient to the
back of the queue after :func:`backoff` seconds: doubling from ``[smtp]
retry_backoff`` (:data:`BACKOFF_BASE` by default) up to :data:`BACKOFF_CAP`, with
jitter so that the retries of many recipients spread out. Once ``[smtp] retry_for``
has passed since a recipient's first try, the row is ``deferred`` instead and a rerun
of the send tries it again.

A permanent failure (5xx) is final for its reader, unless the :class:`Breaker` judges
that the relay, not the list, is the problem (docs/relays.md): then the run stops and
every refused row is queued again, nobody suppressed.
"""

from __future__ import annotations

from collections.abc import Callable

from digest_mail.transport.errors import PermanentFailure

BACKOFF_BASE = 30.0  # seconds before the first retry
BACKOFF_CAP = 900.0
# The circuit breaker (docs/relays.md): permanent rejections among the first
# BREAKER_WINDOW answers of a run are held (the rows stay queued, nobody is suppressed)
# until the window closes. It trips, stopping the run and requeueing them, when
# BREAKER_SAME_REPLY of them carry the same reply that neither names the recipient nor
# can be classified, or when at least BREAKER_MIN_REJECTED of them make up
# BREAKER_SHARE of the answers so far: a list where "everyone does not exist" is a
# relay problem.
BREAKER_WINDOW = 50
BREAKER_SAME_REPLY = 5
BREAKER_MIN_REJECTED = 10
BREAKER_SHARE = 0.5


def backoff(attempts: int, *, base: float, cap: float, random: Callable[[], float]) -> float:
    """Seconds to wait after the ``attempts``-th try: ``base`` doubled per earlier try,
    at most ``cap``, times a jitter between 0.5 and 1.5."""
    delay: float = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * (0.5 + random())


class Breaker:
    """Judges the permanent rejections among the first answers of a run (see
    :data:`BREAKER_WINDOW`): ``trip`` is the reason it tripped, once it has."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.answers = 0
        self.rejected = 0
        self.replies: dict[str, int] = {}
        self.trip = ""

    @property
    def judging(self) -> bool:
        return self.enabled and (bool(self.trip) or self.answers < BREAKER_WINDOW)

    def accepted(self) -> None:
        self.answers += 1

    def refused(self, failure: PermanentFailure) -> None:
        self.answers += 1
        if failure.about == "ours" or self.trip:
            return
        self.rejected += 1
        reply = f"{failure.code or ''} {failure.message}".strip()
        recipient = (failure.recipient or "").lower()
        if failure.about == "unknown" and (not recipient or recipient not in reply.lower()):
            self.replies[reply] = self.replies.get(reply, 0) + 1
            if self.replies[reply] >= BREAKER_SAME_REPLY:
                self.trip = (
                    f"the relay gave the same reply to {self.replies[reply]} of the first "
                    f"recipients: {reply}"
                )
                return
        if self.rejected >= BREAKER_MIN_REJECTED and (
            self.rejected >= BREAKER_SHARE * self.answers
        ):
            self.trip = (
                f"{self.rejected} of the first {self.answers} recipients were refused "
                f"(last: {reply})"
            )
