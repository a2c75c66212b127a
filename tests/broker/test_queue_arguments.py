"""queue.declare / exchange.declare arguments: validation and equivalence, as RabbitMQ 3.10.

The expected texts were taken from a RabbitMQ 3.10.8 node (``rabbit_amqqueue:declare_args/0``
validators and ``rabbit_misc:assert_args_equivalence/4``): clients match on them.
"""

from __future__ import annotations

import pika
import pytest
from support.broker_process import BrokerProcess


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def declare_error(broker: BrokerProcess, name: str, arguments: dict) -> tuple[int, str]:
    with connect(broker) as connection:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.queue_declare(name, arguments=arguments)
        return closed.value.reply_code, closed.value.reply_text


INVALID = [
    ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': "
     "{{value_negative,-1}}"),
    ({"x-message-ttl": "abc"}, "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': "
     '"expected integer, got longstr"'),
    ({"x-expires": 0}, "invalid arg 'x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
    ({"x-max-length": -1}, "invalid arg 'x-max-length' for queue '{q}' in vhost '/': "
     "{{value_negative,-1}}"),
    ({"x-max-length-bytes": "x"}, "invalid arg 'x-max-length-bytes' for queue '{q}' in vhost "
     "'/': \"expected integer, got longstr\""),
    ({"x-overflow": "bogus"}, "invalid arg 'x-overflow' for queue '{q}' in vhost '/': "
     "invalid_overflow"),
    ({"x-overflow": 5}, "invalid arg 'x-overflow' for queue '{q}' in vhost '/': "
     "{{unacceptable_type,signedint}}"),
    ({"x-dead-letter-exchange": 5}, "invalid type 'signedint' for arg 'x-dead-letter-exchange' "
     "in queue '{q}' in vhost '/'"),
    ({"x-dead-letter-routing-key": "k"}, "invalid arg 'x-dead-letter-routing-key' for queue "
     "'{q}' in vhost '/': routing_key_but_no_dlx_defined"),
    ({"x-max-priority": 256}, "invalid arg 'x-max-priority' for queue '{q}' in vhost '/': "
     "{{max_value_exceeded,256}}"),
    ({"x-single-active-consumer": 1}, "invalid arg 'x-single-active-consumer' for queue '{q}' "
     "in vhost '/': {{unacceptable_type,signedint}}"),
    ({"x-queue-mode": "bogus"}, "invalid arg 'x-queue-mode' for queue '{q}' in vhost '/': "
     "\"unsupported queue mode 'bogus'\""),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "text"), INVALID)
def test_invalid_argument_is_406_with_rabbitmq_text(
    shared_broker: BrokerProcess, arguments: dict, text: str
) -> None:
    name = "args-invalid"
    code, reply = declare_error(shared_broker, name, arguments)
    assert (code, reply) == (406, "PRECONDITION_FAILED - " + text.format(q=name))


def test_unknown_and_valid_arguments_are_accepted(shared_broker: BrokerProcess) -> None:
    arguments = {"x-unknown": 1, "x-max-length": 0, "x-max-priority": 0, "x-queue-mode": "lazy"}
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("args-valid", arguments=arguments)
        channel.queue_delete("args-valid")


EQUIVALENCE = [
    ({"x-message-ttl": 2000, "x-max-length": 5},
     "inequivalent arg 'x-message-ttl' for queue 'args-eq' in vhost '/': received '2000' but "
     "current is '1000'"),
    ({"x-max-length": 5},
     "inequivalent arg 'x-message-ttl' for queue 'args-eq' in vhost '/': received none but "
     "current is the value '1000' of type 'signedint'"),
    ({"x-message-ttl": 1000, "x-max-length": 5, "x-max-priority": 3},
     "inequivalent arg 'x-max-priority' for queue 'args-eq' in vhost '/': received the value "
     "'3' of type 'signedint' but current is none"),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "text"), EQUIVALENCE)
def test_redeclare_with_other_arguments_is_inequivalent(
    shared_broker: BrokerProcess, arguments: dict, text: str
) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("args-eq", arguments={"x-message-ttl": 1000, "x-max-length": 5})
        try:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
                channel.queue_declare("args-eq", arguments=arguments)
            assert closed.value.reply_code == 406
            assert closed.value.reply_text == "PRECONDITION_FAILED - " + text
        finally:
            connection.channel().queue_delete("args-eq")


def test_redeclare_ignores_arguments_rabbitmq_does_not_compare(
    shared_broker: BrokerProcess,
) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("args-extra", arguments={"x-message-ttl": 1000})
        channel.queue_declare("args-extra", arguments={"x-message-ttl": 1000, "x-foo": 1})
        channel.queue_delete("args-extra")


def test_durable_queue_keeps_its_arguments_across_kill_9(durable_broker: BrokerProcess) -> None:
    """Recovery rebuilds the queue from ``QueueDeclared.arguments``: limits still apply."""
    with connect(durable_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("args-durable", durable=True, arguments={"x-max-length": 2})
        channel.confirm_delivery()  # the confirm comes after the (earlier) declare is on disk
        channel.basic_publish("", "args-durable", b"0", pika.BasicProperties(delivery_mode=2))
    durable_broker.kill()
    durable_broker.restart()
    with connect(durable_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", "args-durable", body)
        assert channel.queue_declare("args-durable", passive=True).method.message_count == 2
        assert channel.basic_get("args-durable", auto_ack=True)[2] == b"2"
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.queue_declare("args-durable", durable=True, arguments={"x-max-length": 3})
        assert "inequivalent arg 'x-max-length'" in closed.value.reply_text
