"""alternate-exchange: messages an exchange routes nowhere go to its alternate instead.

RabbitMQ's rules (https://www.rabbitmq.com/ae.html): a message the exchange cannot route is
published to the alternate exchange (which may have its own alternate); a mandatory message
routed that way is not returned; an alternate exchange that does not exist leaves the message
unroutable (returned if mandatory). The argument must be a string and is compared on redeclare.
"""

from __future__ import annotations

import pika
import pytest
import trio
from support.broker_process import BrokerProcess

from plugmq.client import connect as trio_connect


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def test_unroutable_message_goes_to_the_alternate(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("ae-unrouted", "fanout", auto_delete=True)
        channel.exchange_declare(
            "ae-main", "direct", auto_delete=True, arguments={"alternate-exchange": "ae-unrouted"}
        )
        routed = channel.queue_declare("", exclusive=True).method.queue
        unrouted = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(routed, "ae-main", "known")
        channel.queue_bind(unrouted, "ae-unrouted")
        channel.confirm_delivery()
        channel.basic_publish("ae-main", "known", b"routed", mandatory=True)
        channel.basic_publish("ae-main", "unknown", b"alternate", mandatory=True)  # no return
        got = channel.basic_get(unrouted, auto_ack=True)
        assert (got[2], got[0].exchange, got[0].routing_key) == (b"alternate", "ae-main", "unknown")
        assert channel.basic_get(routed, auto_ack=True)[2] == b"routed"
        assert channel.basic_get(unrouted)[0] is None


def test_missing_alternate_leaves_the_message_unroutable(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare(
            "ae-dangling", "direct", auto_delete=True, arguments={"alternate-exchange": "ae-none"}
        )
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish("ae-dangling", "x", b"lost", mandatory=True)


async def test_alternate_of_the_alternate(shared_broker: BrokerProcess) -> None:
    with trio.fail_after(10):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            await ch.exchange_declare("ae-last", "fanout", auto_delete=True)
            await ch.exchange_declare(
                "ae-middle", "direct", auto_delete=True, arguments={"alternate-exchange": "ae-last"}
            )
            await ch.exchange_declare(
                "ae-first", "topic", auto_delete=True, arguments={"alternate-exchange": "ae-middle"}
            )
            queue = (await ch.queue_declare("", exclusive=True)).name
            await ch.queue_bind(queue, "ae-last")
            await ch.confirm_select()
            await ch.publish_confirmed("ae-first", "a.b", b"twice-unroutable")
            message = await ch.get(queue, no_ack=True)
            assert message is not None and message.body == b"twice-unroutable"


def test_alternate_exchange_argument_is_checked(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare(
            "ae-eq", "direct", auto_delete=True, arguments={"alternate-exchange": "foo"}
        )
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.exchange_declare(
                "ae-eq", "direct", auto_delete=True, arguments={"alternate-exchange": "bar"}
            )
        assert closed.value.reply_text == (
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'ae-eq' in "
            "vhost '/': received 'bar' but current is 'foo'"
        )
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.exchange_declare("ae-bad", "direct", arguments={"alternate-exchange": 5})
        assert closed.value.reply_text == (
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in "
            "exchange 'ae-bad' in vhost '/'"
        )
