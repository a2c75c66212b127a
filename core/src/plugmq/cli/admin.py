"""What every remote admin command shares: ``--broker``/``--json`` options, running one
management request over AMQP, and turning every failure into one error line.

The admin commands (``config``, ``stat``, ``user``, ``vhost``, ``permissions``) are thin: they
build a request, send it with :class:`Admin` and print the result as a table or JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import trio
import typer

from plugmq.cli.output import emit
from plugmq.client import ChannelClosed, ConnectionClosed, ConnectionFailed
from plugmq.logging import configure_logging
from plugmq.management.client import ManagementError, management_client

if TYPE_CHECKING:
    from plugmq.plugins.manager import PluginManager

DEFAULT_BROKER = "amqp://guest:guest@localhost:5672/"

BrokerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--broker",
        "-b",
        envvar="PLUGMQ_BROKER",
        help="Broker URL (amqp://user:pass@host:port/vhost). Repeat it, or separate URLs with "
        f"commas, for failover. [default: {DEFAULT_BROKER}]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the connection and the response.")
]
VhostOption = Annotated[
    str | None,
    typer.Option("--vhost", "-p", help="Virtual host to act on (default: the URL's vhost)."),
]
ArgumentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--argument",
        "-a",
        help="An AMQP argument KEY=VALUE (repeatable); numbers and "
        "true/false are typed, anything else is a string.",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear error line on stderr and a non-zero exit."""
    typer.echo(f"plugmq: error: {message}", err=True)
    raise SystemExit(code)


def broker_urls(brokers: list[str] | None) -> list[str]:
    """The URLs of ``--broker`` (repeated and/or comma-separated), or the default."""
    urls = [url.strip() for value in brokers or () for url in value.split(",") if url.strip()]
    return urls or [DEFAULT_BROKER]


def parse_arguments(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings as an arguments table (ints, floats and booleans typed)."""
    table: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"bad --argument {pair!r}: expected KEY=VALUE", code=2)
        table[key] = _typed(value)
    return table


def _typed(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d*", value):
        return float(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class Admin:
    """Runs management requests for the CLI; dials through the loaded transport plugins."""

    def __init__(self, plugins: PluginManager) -> None:
        self._plugins = plugins

    def request(
        self, brokers: list[str] | None, timeout: float, command: str, **arguments: Any
    ) -> Any:
        """Send one request and return its result; exit with one error line on any failure."""
        urls = broker_urls(brokers)
        # stdout is for results: the client's own log events go to stderr, errors only (the
        # failures that matter are reported as one line below).
        configure_logging("error")
        try:
            return trio.run(self._request, urls, timeout, command, arguments)
        except ValueError as error:  # a malformed URL
            fail(str(error), code=2)
        except ConnectionFailed as error:
            fail(f"cannot connect to the broker: {_attempts(error)}")
        except ChannelClosed as error:
            fail(f"the broker refused the request: {error.reply_code} {error.reply_text}")
        except ConnectionClosed as error:
            fail(f"the broker closed the connection: {error.reply_code} {error.reply_text}")
        except ManagementError as error:
            fail(str(error))

    def call(
        self, brokers: list[str] | None, timeout: float, command: str, **arguments: Any
    ) -> Any:
        """Send one request and return its result; raise the client's errors (for commands
        that ask several brokers and report the unreachable ones, such as ``route map``)."""
        configure_logging("error")
        return trio.run(self._request, broker_urls(brokers), timeout, command, arguments)

    async def _request(
        self, urls: list[str], timeout: float, command: str, arguments: dict[str, Any]
    ) -> Any:
        async with management_client(
            urls, timeout=timeout, connect_timeout=timeout, dialer_for=self._plugins.dialer_for
        ) as admin:
            return await admin.call(command, **arguments)

    def run(
        self,
        brokers: list[str] | None,
        timeout: float,
        as_json: bool,
        show: Callable[[Any], None],
        command: str,
        **arguments: Any,
    ) -> None:
        """Send a request and print its result: JSON with ``--json``, else ``show(result)``."""
        emit(self.request(brokers, timeout, command, **arguments), as_json, show)


def _attempts(error: ConnectionFailed) -> str:
    """Each URL tried and why it failed, on one line."""
    return "; ".join(f"{url}: {_reason(cause)}" for url, cause in error.errors)


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionClosed):
        return f"{error.reply_code} {error.reply_text}"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    if isinstance(error, trio.TooSlowError):
        return "timed out"
    return str(error) or type(error).__name__
