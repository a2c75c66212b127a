"""``plugmq perf``: benchmark any AMQP 0-9-1 broker (see :mod:`plugmq.perf`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer

from plugmq.cli.common import AutoloadOption, LoadModuleOption


def make_perf_command() -> Callable[..., None]:
    """The ``perf`` command function."""

    def perf(
        scenarios: Annotated[
            list[str] | None,
            typer.Argument(
                help="throughput, throughput-noack, durable, fanout, topic, latency, "
                "connections, backlog, ceiling (several run one after the other).",
                show_default=False,
            ),
        ] = None,
        url: Annotated[
            str, typer.Option("--url", help="Broker URL (any AMQP 0-9-1 broker).")
        ] = "amqp://guest:guest@127.0.0.1:5672/",
        size: Annotated[int, typer.Option(help="Message body size in bytes.")] = 100,
        duration: Annotated[
            float, typer.Option(help="Measured window per scenario (seconds).")
        ] = 10.0,
        warmup: Annotated[float, typer.Option(help="Unmeasured warm-up (seconds).")] = 1.0,
        max_inflight: Annotated[
            int,
            typer.Option(help="Most messages published but not consumed, per queue (0: no cap)."),
        ] = 10_000,
        prefetch: Annotated[int, typer.Option(help="Consumer prefetch (manual ack).")] = 100,
        confirm_window: Annotated[
            int, typer.Option(help="Unconfirmed publishes allowed (durable, backlog).")
        ] = 100,
        queues: Annotated[int, typer.Option(help="Queues in fanout and topic.")] = 10,
        bindings: Annotated[int, typer.Option(help="Topic bindings (distinct).")] = 1000,
        keys: Annotated[int, typer.Option(help="Topic routing keys.")] = 1000,
        rate: Annotated[float, typer.Option(help="Publish rate of latency (msg/s).")] = 1000.0,
        connections: Annotated[int, typer.Option(help="Idle connections to open.")] = 1000,
        connect_concurrency: Annotated[
            int, typer.Option(help="Connections being opened at once.")
        ] = 20,
        count: Annotated[int, typer.Option(help="Messages to publish (backlog).")] = 100_000,
        queue: Annotated[
            str | None, typer.Option(help="Queue name for single-queue scenarios.")
        ] = None,
        queue_arg: Annotated[
            list[str] | None,
            typer.Option(
                help="KEY=VALUE argument of every declared queue (repeatable), e.g. "
                "x-queue-type=quorum for RabbitMQ's quorum queues."
            ),
        ] = None,
        keep: Annotated[bool, typer.Option(help="Do not delete the queues afterwards.")] = False,
        drain_timeout: Annotated[
            float, typer.Option(help="How long consumers may take to drain (seconds).")
        ] = 15.0,
        broker_pid: Annotated[
            int | None,
            typer.Option(help="Local broker process: measure its CPU per message and RSS."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
        quiet: Annotated[bool, typer.Option(help="No progress lines on stderr.")] = False,
        load_module: LoadModuleOption = None,
        no_autoload: AutoloadOption = False,
    ) -> None:
        from plugmq.logging import configure_logging
        from plugmq.perf import report
        from plugmq.perf.scenarios import SCENARIOS, PerfConfig, PerfError, run_scenario

        configure_logging("warning")
        names = scenarios or ["throughput"]
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown:
            typer.echo(
                f"plugmq: error: unknown scenario {unknown[0]!r}; choose from "
                f"{', '.join(SCENARIOS)}",
                err=True,
            )
            raise SystemExit(2)

        def progress(line: str) -> None:
            if not quiet:
                print(line, file=sys.stderr, flush=True)

        queue_arguments = {}
        for pair in queue_arg or ():
            key, sep, value = pair.partition("=")
            if not sep or not key:
                typer.echo(f"plugmq: error: --queue-arg {pair!r} is not KEY=VALUE", err=True)
                raise SystemExit(2)
            queue_arguments[key] = value
        results = []
        for name in names:
            config = PerfConfig(
                scenario=name,
                url=url,
                size=size,
                duration=duration,
                warmup=warmup,
                max_inflight=max_inflight,
                prefetch=prefetch,
                confirm_window=confirm_window,
                queues=queues,
                bindings=bindings,
                keys=keys,
                rate=rate,
                connections=connections,
                connect_concurrency=connect_concurrency,
                count=count if name == "backlog" else 0,
                queue=queue,
                queue_arguments=queue_arguments,
                keep=keep,
                drain_timeout=drain_timeout,
                broker_pid=broker_pid,
            )
            try:
                result = run_scenario(config, progress)
            except (PerfError, OSError) as error:
                typer.echo(f"plugmq: error: {name}: {error}", err=True)
                raise SystemExit(1) from None
            results.append(result)
            if not as_json:
                typer.echo(report.table(result))
        if as_json:
            typer.echo(report.to_json(results[0] if len(results) == 1 else results))
        if not all(result.get("ok", True) for result in results):
            raise SystemExit(3)

    return perf
