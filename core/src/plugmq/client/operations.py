"""The cold methods of a channel: declares, bindings, purge/delete, QoS, recover, tx.

Each is one synchronous round trip through :meth:`ClientChannel._call` with a pamqp method;
kept apart from :mod:`plugmq.client.channel`, which holds the channel's state machine and
its hot paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from pamqp import commands

Arguments = Mapping[str, Any] | None


class QueueDeclareOk(NamedTuple):
    """The result of :meth:`ClientChannel.queue_declare`."""

    name: str
    message_count: int
    consumer_count: int


class ChannelOperations:
    """Declares, bindings, QoS and transactions; mixed into :class:`ClientChannel`."""

    _call: Callable[..., Awaitable[Any]]

    # ----------------------------------------------------------------------------------------
    # Exchanges and queues
    # ----------------------------------------------------------------------------------------

    async def exchange_declare(
        self,
        exchange: str,
        exchange_type: str = "direct",
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Arguments = None,
    ) -> None:
        """Declare (or with ``passive`` check) an exchange."""
        method = commands.Exchange.Declare(
            exchange=exchange,
            exchange_type=exchange_type,
            passive=passive,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=as_table(arguments),
        )
        await self._call(method, commands.Exchange.DeclareOk)

    async def exchange_delete(self, exchange: str, *, if_unused: bool = False) -> None:
        """Delete an exchange."""
        method = commands.Exchange.Delete(exchange=exchange, if_unused=if_unused)
        await self._call(method, commands.Exchange.DeleteOk)

    async def exchange_bind(
        self, destination: str, source: str, routing_key: str = "", arguments: Arguments = None
    ) -> None:
        """Bind exchange ``destination`` to exchange ``source`` (RabbitMQ extension)."""
        method = commands.Exchange.Bind(
            destination=destination,
            source=source,
            routing_key=routing_key,
            arguments=as_table(arguments),
        )
        await self._call(method, commands.Exchange.BindOk)

    async def exchange_unbind(
        self, destination: str, source: str, routing_key: str = "", arguments: Arguments = None
    ) -> None:
        """Remove an exchange-to-exchange binding."""
        method = commands.Exchange.Unbind(
            destination=destination,
            source=source,
            routing_key=routing_key,
            arguments=as_table(arguments),
        )
        await self._call(method, commands.Exchange.UnbindOk)

    async def queue_declare(
        self,
        queue: str = "",
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Arguments = None,
    ) -> QueueDeclareOk:
        """Declare (or with ``passive`` check) a queue; ``""`` lets the broker name it."""
        method = commands.Queue.Declare(
            queue=queue,
            passive=passive,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            arguments=as_table(arguments),
        )
        ok = await self._call(method, commands.Queue.DeclareOk)
        return QueueDeclareOk(ok.queue, ok.message_count, ok.consumer_count)

    async def queue_bind(
        self, queue: str, exchange: str, routing_key: str = "", arguments: Arguments = None
    ) -> None:
        """Bind ``queue`` to ``exchange``."""
        method = commands.Queue.Bind(
            queue=queue, exchange=exchange, routing_key=routing_key, arguments=as_table(arguments)
        )
        await self._call(method, commands.Queue.BindOk)

    async def queue_unbind(
        self, queue: str, exchange: str, routing_key: str = "", arguments: Arguments = None
    ) -> None:
        """Remove a queue binding."""
        method = commands.Queue.Unbind(
            queue=queue, exchange=exchange, routing_key=routing_key, arguments=as_table(arguments)
        )
        await self._call(method, commands.Queue.UnbindOk)

    async def queue_purge(self, queue: str) -> int:
        """Remove every ready message of ``queue``; return how many were removed."""
        ok = await self._call(commands.Queue.Purge(queue=queue), commands.Queue.PurgeOk)
        return ok.message_count

    async def queue_delete(
        self, queue: str, *, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """Delete ``queue``; return how many messages it held."""
        method = commands.Queue.Delete(queue=queue, if_unused=if_unused, if_empty=if_empty)
        ok = await self._call(method, commands.Queue.DeleteOk)
        return ok.message_count

    async def basic_qos(
        self, prefetch_count: int = 0, prefetch_size: int = 0, global_: bool = False
    ) -> None:
        """Limit unacknowledged deliveries (per consumer in RabbitMQ unless ``global_``)."""
        method = commands.Basic.Qos(
            prefetch_size=prefetch_size, prefetch_count=prefetch_count, global_=global_
        )
        await self._call(method, commands.Basic.QosOk)

    async def basic_recover(self, requeue: bool = True) -> None:
        """Redeliver this channel's unacknowledged messages."""
        await self._call(commands.Basic.Recover(requeue=requeue), commands.Basic.RecoverOk)

    # ----------------------------------------------------------------------------------------
    # Transactions
    # ----------------------------------------------------------------------------------------

    async def tx_select(self) -> None:
        """Put the channel in transactional mode."""
        await self._call(commands.Tx.Select(), commands.Tx.SelectOk)

    async def tx_commit(self) -> None:
        """Commit the publishes and acks of the current transaction."""
        await self._call(commands.Tx.Commit(), commands.Tx.CommitOk)

    async def tx_rollback(self) -> None:
        """Discard the publishes and acks of the current transaction."""
        await self._call(commands.Tx.Rollback(), commands.Tx.RollbackOk)


def as_table(arguments: Arguments) -> dict[str, Any] | None:
    """A field table for pamqp from an optional mapping (None when empty)."""
    return dict(arguments) if arguments else None
