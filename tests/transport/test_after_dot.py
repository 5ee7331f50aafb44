"""A lost session means a retry before the final dot, and uncertainty from it on:
decided in one place (transport.errors), from the stage the connection reports."""

from __future__ import annotations

import pytest

from digest_mail.transport.errors import (
    TemporaryFailure,
    UncertainFailure,
    connection_lost,
    ends_session,
)


@pytest.mark.parametrize("stage", ["", "connect", "sender", "recipient", "data"])
def test_a_loss_before_the_final_dot_is_retried(stage: str) -> None:
    failure = connection_lost("timed out", recipient="a@example.jp", stage=stage)
    assert isinstance(failure, TemporaryFailure) and ends_session(failure)


def test_a_loss_once_the_final_dot_may_have_gone_is_uncertain() -> None:
    failure = connection_lost("timed out", recipient="a@example.jp", stage="message")
    assert isinstance(failure, UncertainFailure) and not isinstance(failure, TemporaryFailure)
    assert ends_session(failure)  # the pool reconnects for the next message
    assert failure.recipient == "a@example.jp" and failure.code is None
