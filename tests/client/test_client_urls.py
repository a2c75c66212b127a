"""Broker URL parsing (no broker needed)."""

from __future__ import annotations

import pytest

from plugmq.client import parse_url
from plugmq.client.urls import adopt_url, master_redirect_text, redirect_target, same_broker


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


def test_redirect_text_round_trips_through_the_convention() -> None:
    text = master_redirect_text("standby", "amqp://10.0.0.2:5672/")
    assert text == "standby; the master is amqp://10.0.0.2:5672/"
    assert redirect_target(text) == "amqp://10.0.0.2:5672/"
    assert redirect_target("320 CONNECTION_FORCED - " + text + ". Bye") == "amqp://10.0.0.2:5672/"
    quoted = f"broker forced connection closure with reason '{text}'"
    assert redirect_target(quoted) == "amqp://10.0.0.2:5672/"


@pytest.mark.parametrize(
    "text", ["broker shutting down", "the master is ", "the master is unknown", "the master is "]
)
def test_close_texts_without_a_master_url_are_no_redirect(text: str) -> None:
    assert redirect_target(text) is None


def test_adopted_url_keeps_credentials_and_vhost_of_the_given_url() -> None:
    given = parse_url("amqp://app:s3cret@h1:5672/orders")
    adopted = adopt_url(b"amqp://intruder:x@H2:5673/other", given)
    assert adopted is not None
    assert (adopted.host, adopted.port) == ("h2", 5673)
    assert (adopted.username, adopted.password, adopted.vhost) == ("app", "s3cret", "orders")
    assert same_broker(adopted, parse_url("amqp://h2:5673/"))
    assert not same_broker(adopted, parse_url("amqp+rdma://h2:5673/"))
    assert adopt_url("not a url", given) is None
