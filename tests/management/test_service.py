"""The management protocol with a client that knows nothing of plugmq (pika, raw JSON)."""

from __future__ import annotations

import json
import uuid

import pika
import pytest
from support.broker_process import BrokerProcess

QUEUE = "plugmq.management"


class Requester:
    """Publishes requests the way docs/management.md describes and waits for the answer."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", broker.port)
        )
        self.channel = self.connection.channel()
        self.reply_to = self.channel.queue_declare("", exclusive=True).method.queue

    def ask(self, body: bytes, user_id: str | None = "guest") -> dict:
        correlation_id = str(uuid.uuid4())
        properties = pika.BasicProperties(
            reply_to=self.reply_to,
            correlation_id=correlation_id,
            user_id=user_id,
            content_type="application/json",
        )
        self.channel.basic_publish("", QUEUE, body, properties)
        for _ in range(100):
            method, props, answer = self.channel.basic_get(self.reply_to, auto_ack=True)
            if method is not None:
                assert props.correlation_id == correlation_id
                assert props.content_type == "application/json"
                return json.loads(answer)
            self.connection.process_data_events(0.05)
        raise AssertionError("no response")

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def requester(shared_broker: BrokerProcess):
    client = Requester(shared_broker)
    yield client
    client.close()


def _request(command: str, **arguments) -> bytes:
    return json.dumps({"command": command, "arguments": arguments}).encode()


def test_a_request_gets_a_json_response(requester: Requester) -> None:
    response = requester.ask(_request("queue.add", name="svc.q", durable=False))
    assert response == {"ok": True, "result": {"vhost": "/", "name": "svc.q", "durable": False}}
    names = {q["name"] for q in requester.ask(_request("queue.list"))["result"]}
    assert {"svc.q", QUEUE} <= names


@pytest.mark.parametrize(
    ("body", "user_id", "error"),
    [
        (_request("queue.list"), None, "must carry the user_id property"),
        (_request("no.such.command"), "guest", "unknown command 'no.such.command'"),
        (b"not json", "guest", "request body is not JSON"),
        (b'{"arguments": {}}', "guest", 'must be an object with a "command" string'),
        (_request("queue.add", name=5), "guest", "argument 'name' must be a string"),
    ],
)
def test_bad_requests_get_error_responses(
    requester: Requester, body: bytes, user_id: str | None, error: str
) -> None:
    response = requester.ask(body, user_id)
    assert response["ok"] is False and error in response["error"]


def test_clients_cannot_consume_or_delete_the_management_queue(requester: Requester) -> None:
    channel = requester.connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_consume(QUEUE, lambda *args: None)
    assert closed.value.reply_code == 405
    channel = requester.connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_delete(QUEUE)
    assert closed.value.reply_code == 405
    assert requester.ask(_request("vhost.list"))["ok"] is True
