"""Broker URL parsing (no broker needed)."""

from __future__ import annotations

import pytest

from plugmq.client import parse_url


def test_defaults_fill_user_password_port_and_vhost() -> None:
    url = parse_url("amqp://broker.example")
    assert (url.username, url.password, url.port, url.vhost) == ("guest", "guest", 5672, "/")


def test_percent_encoded_vhost_and_credentials() -> None:
    url = parse_url("amqp://us%40er:p%3Ass@127.0.0.1:5673/%2F")
    assert (url.username, url.password, url.port, url.vhost) == ("us@er", "p:ss", 5673, "/")


def test_named_vhost_and_custom_scheme() -> None:
    url = parse_url("amqp+rdma://10.0.0.1:7000/prod")
    assert (url.scheme, url.host, url.vhost) == ("amqp+rdma", "10.0.0.1", "prod")


def test_str_masks_the_password() -> None:
    assert "secret" not in str(parse_url("amqp://u:secret@h/"))


@pytest.mark.parametrize(
    "bad", ["http://h/", "amqp://h/?heartbeat=5", "amqp:///vhost", "amqp://h:99999/"]
)
def test_bad_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_url(bad)
