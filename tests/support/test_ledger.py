"""The invariant ledger catches what it is for, and lets at-least-once through.

Pure bookkeeping (no broker): the ledger's verdicts are checked on hand-made histories, so
the fault tests that rely on it cannot pass because the ledger never fails.
"""

from __future__ import annotations

import time

import pytest

from support.ledger import ACK_SETTLE_SECONDS, Ledger


def _published_and_confirmed(ledger: Ledger, *ids: str) -> None:
    for message_id in ids:
        ledger.publish(message_id)
        ledger.confirm(message_id)


def test_a_confirmed_message_never_delivered_is_lost() -> None:
    ledger = Ledger()
    _published_and_confirmed(ledger, "a", "b")
    ledger.deliver("a")
    with pytest.raises(AssertionError, match=r"confirmed never delivered.*'b'"):
        ledger.check()


def test_a_settled_ack_that_comes_back_fails() -> None:
    ledger = Ledger()
    _published_and_confirmed(ledger, "a")
    ledger.deliver("a")
    ledger.ack("a")
    ledger.deliver("a")  # no fault anywhere near the ack: the broker lost a settled ack
    ledger.ack("a")
    with pytest.raises(AssertionError, match=r"settled acks came back.*'a'"):
        ledger.check()


def test_an_ack_just_before_a_fault_may_be_lost() -> None:
    ledger = Ledger()
    _published_and_confirmed(ledger, "a")
    ledger.deliver("a")
    ledger.ack("a")
    ledger.fault()
    ledger.recovered()
    ledger.deliver("a")
    ledger.ack("a", at=time.monotonic() + 3 * ACK_SETTLE_SECONDS)
    report = ledger.check()
    assert report.redelivered == 1 and report.duplicates == ["a"]
    with pytest.raises(AssertionError, match="duplicates"):
        ledger.check(duplicates_allowed=False)


def test_a_publish_in_flight_across_a_fault_may_be_stored_twice() -> None:
    ledger = Ledger()
    ledger.publish("a")
    ledger.fault()  # the library republishes by itself; the ledger sees one publish
    ledger.recovered()
    ledger.confirm("a")
    later = time.monotonic() + 3 * ACK_SETTLE_SECONDS
    for offset in (0.0, 0.1):
        ledger.deliver("a")
        ledger.ack("a", at=later + offset)
    assert ledger.check().acked_came_back == []
    ledger.deliver("a")  # a third copy is one too many
    ledger.ack("a", at=later + 0.2)
    with pytest.raises(AssertionError, match="settled acks came back"):
        ledger.check()
