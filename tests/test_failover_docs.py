"""docs/failover.md: its Python snippets compile and name the convention the code defines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugmq.client.urls import MASTER_REDIRECT_MARKER, master_redirect_text

PAGE = Path(__file__).resolve().parent.parent / "docs" / "failover.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_the_page_has_a_snippet_per_client() -> None:
    text = "\n".join(SNIPPETS)
    for client in ("plugmq.client", "pika", "kombu", "celery", "aio_pika"):
        assert f"import {client}" in text or f"from {client}" in text, client


@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_snippet_compiles(number: int) -> None:
    compile(SNIPPETS[number], f"failover.md snippet {number}", "exec")


def test_the_wire_example_follows_the_redirect_convention() -> None:
    example = master_redirect_text("standby", "amqp://10.0.0.2:5672/")
    assert MASTER_REDIRECT_MARKER.strip() in example
    assert example in PAGE.read_text()
    assert "[docs/failover.md](docs/failover.md)" in (PAGE.parents[1] / "README.md").read_text()
