"""The path header splice (plugmq_federation.wire) against pamqp's own decoder.

Every other property must come through byte-identical in meaning, whatever the publisher set,
and the path must be readable back: checked over generated property sets (hypothesis).
"""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands

from plugmq.amqp.content import decode_properties, encode_header
from plugmq_federation.dedup import DuplicateWindow, InDoubt
from plugmq_federation.hops import Forward, Verdict, hop
from plugmq_federation.wire import scan, with_path

text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
header_values = st.one_of(st.integers(-(2**31), 2**31 - 1), text, st.booleans(), st.none())
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": text,
        "content_encoding": text,
        "headers": st.dictionaries(text.filter(bool), header_values, max_size=4),
        "delivery_mode": st.sampled_from([1, 2]),
        "priority": st.integers(0, 9),
        "correlation_id": text,
        "reply_to": text,
        "expiration": st.integers(0, 10**6).map(str),
        "message_id": text,
        "timestamp": st.just(datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)),
        "message_type": text,
        "user_id": text,
        "app_id": text,
    },
)


def _header(fields: dict) -> bytes:
    return encode_header(11, commands.Basic.Properties(**fields))


@given(properties, st.lists(st.sampled_from(["a", "b", "node-12"]), min_size=1, max_size=4))
def test_with_path_keeps_every_property_and_sets_the_path(fields: dict, path: list[str]) -> None:
    header = _header(fields)
    found = scan(header)
    assert found.path is None
    assert found.message_id == (
        fields["message_id"].encode() if fields.get("message_id") else found.message_id
    )
    value = ",".join(path).encode()
    once = with_path(header, found, value)
    twice = with_path(once, scan(once), value + b",z")  # a second hop replaces, never appends
    for rewritten, expected in ((once, value), (twice, value + b",z")):
        decoded = decode_properties(rewritten)
        original = decode_properties(header)
        headers = dict(decoded.headers)
        assert headers.pop("x-plugmq-path") == expected.decode()
        assert headers == (original.headers or {})
        for name in fields:
            if name != "headers":
                assert getattr(decoded, name) == getattr(original, name), name
        assert scan(rewritten).path == expected


def test_hop_refuses_loops_hop_limits_and_duplicates() -> None:
    window = DuplicateWindow(size=2)
    first = _header({"message_id": "m1"})
    forward = hop(first, b"body", b"a", b"b", 8, window)
    assert isinstance(forward, Forward)
    assert scan(forward.header).path == b"a,b"
    assert hop(forward.header, b"body", b"b", b"a", 8, None) is Verdict.LOOP
    assert isinstance(hop(forward.header, b"body", b"b", b"c", 2, None), Forward)  # 2nd hop
    assert hop(forward.header, b"body", b"b", b"c", 1, None) is Verdict.MAX_HOPS
    assert hop(first, b"body", b"a", b"b", 8, window) is Verdict.DUPLICATE  # same message id


def test_identical_messages_without_id_pass_but_path_copies_and_resends_do_not() -> None:
    window, in_doubt = DuplicateWindow(), InDoubt(16)
    plain = _header({})
    # Two identical messages from a, each reaching d directly and through b.
    direct = [hop(plain, b"x", b"a", b"d", 8, window, in_doubt) for _ in range(2)]
    assert all(isinstance(f, Forward) for f in direct)
    via_b = hop(plain, b"x", b"a", b"b", 8, None)
    assert isinstance(via_b, Forward)
    for _ in range(2):
        assert hop(via_b.header, b"x", b"b", b"d", 8, window, in_doubt) is Verdict.DUPLICATE
    # The link stored the first one; the source resends it (redelivered): recognised once.
    in_doubt.stored(direct[0].key)
    assert hop(plain, b"x", b"a", b"d", 8, window, in_doubt, redelivered=True) is (
        Verdict.DUPLICATE
    )
    # A third identical message, not a resend, passes.
    assert isinstance(hop(plain, b"x", b"a", b"d", 8, window, in_doubt), Forward)
