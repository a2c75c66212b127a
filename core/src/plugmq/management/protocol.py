"""The wire format of management requests and responses (JSON bodies, see docs/management.md).

A request is published to the default exchange with routing key :data:`QUEUE`, properties
``reply_to``, ``correlation_id`` and ``user_id``, and a body
``{"command": "queue.add", "arguments": {...}}``. The response goes to ``reply_to`` with the
same ``correlation_id``: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any

#: The reserved queue of the management service, in every virtual host.
QUEUE = "plugmq.management"
CONTENT_TYPE = "application/json"


class ProtocolError(ValueError):
    """A request or response body that is not what this protocol defines."""


def encode_request(command: str, arguments: dict[str, Any] | None = None) -> bytes:
    """The body of a request."""
    return json.dumps({"command": command, "arguments": arguments or {}}).encode()


def decode_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """``(command, arguments)`` of a request body; :class:`ProtocolError` if malformed."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"request body is not JSON: {error}") from error
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise ProtocolError('request body must be an object with a "command" string')
    arguments = request.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ProtocolError('"arguments" must be an object')
    return request["command"], arguments


def encode_result(result: Any) -> bytes:
    """A success response. AMQP values JSON lacks (bytes, decimals, dates) become strings."""
    return json.dumps({"ok": True, "result": result}, default=_plain).encode()


def encode_error(message: str) -> bytes:
    """A failure response."""
    return json.dumps({"ok": False, "error": message}).encode()


def decode_response(body: bytes) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, error message)``; :class:`ProtocolError` if malformed."""
    try:
        response = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"response body is not JSON: {error}") from error
    if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
        raise ProtocolError('response body must be an object with an "ok" boolean')
    if response["ok"]:
        return True, response.get("result")
    return False, str(response.get("error", "unknown error"))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
