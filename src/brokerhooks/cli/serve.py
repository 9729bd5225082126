"""``brokerhooks serve`` and ``brokerhooks migrate``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import uvicorn

from brokerhooks.app import create_app
from brokerhooks.cli.base import Context, _safe_url, pass_context
from brokerhooks.demo import Demo
from brokerhooks.interpreter import prepare_to_serve
from brokerhooks.logs import configure_logging
from brokerhooks.pipeline.service import build_worker, run_until_signalled
from brokerhooks.runtime import Runtime
from brokerhooks.store import migrate as migrations
from brokerhooks.store.database import make_engine


@click.command()
@pass_context
def migrate(context: Context) -> None:
    """Bring the database schema up to date."""
    settings = context.settings
    engine = make_engine(settings)
    try:
        before = migrations.current_revision(engine)
        migrations.upgrade(engine)
        after = migrations.current_revision(engine)
    finally:
        engine.dispose()
    where = _safe_url(settings.database_url)
    if before == after:
        click.echo(f"{where}: schema already at {after}")
    else:
        click.echo(f"{where}: schema migrated from {before or 'empty'} to {after}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--no-worker",
    is_flag=True,
    help="Only receive; leave processing to `brokerhooks worker` processes.",
)
@pass_context
def serve(context: Context, host: str, port: int, no_worker: bool) -> None:
    """Serve the webhook endpoints, health checks and metrics.

    Unless --no-worker is given, a worker runs in the same process.
    """
    settings = context.settings
    runtime = Runtime.build(settings, context.engine)
    worker = (
        None
        if no_worker
        else build_worker(runtime.engine, settings, metrics=runtime.metrics)
    )
    app = create_app(settings, runtime, worker)
    prepare_to_serve(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    help="Jobs run at once (default: BROKERHOOKS_WORKER_CONCURRENCY).",
)
@click.option(
    "--grace",
    default=20.0,
    show_default=True,
    help="Seconds running jobs get to finish on SIGTERM before being released.",
)
@pass_context
def worker(context: Context, concurrency: int | None, grace: float) -> None:
    """Process queued events (without serving HTTP)."""
    settings = context.settings
    the_worker = build_worker(context.engine, settings, concurrency=concurrency)
    prepare_to_serve(settings)
    asyncio.run(run_until_signalled(the_worker, grace))


@click.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--simulator-port", default=8100, show_default=True, type=click.IntRange(1, 65535)
)
@click.option(
    "--graph-port",
    default=8101,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The Microsoft 365 simulator's port (HTTPS).",
)
@click.option(
    "--folder",
    default="brokerhooks-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo keeps its database (emptied at each start).",
)
@click.option("--pause", default=0.5, show_default=True, help="Seconds between steps.")
@click.option(
    "--no-serve",
    is_flag=True,
    help="Play the journey and exit: 0 if every event was processed, 1 if not.",
)
def demo(
    folder: Path,
    port: int,
    simulator_port: int,
    graph_port: int,
    pause: float,
    no_serve: bool,
) -> None:
    """Run brokerhooks with the simulators and a demo broker, and play a deal."""
    configure_logging("console", "WARNING")
    the_demo = Demo(
        folder=folder,
        port=port,
        simulator_port=simulator_port,
        graph_port=graph_port,
        pause=pause,
    )
    the_demo.prepare()
    try:
        ok = asyncio.run(the_demo.run(serve=not no_serve))
    except KeyboardInterrupt:
        return
    if no_serve:
        click.echo("journey " + ("succeeded" if ok else "had failures"))
        raise click.exceptions.Exit(0 if ok else 1)
