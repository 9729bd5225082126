"""``brokerhooks serve`` and ``brokerhooks migrate``."""

from __future__ import annotations

import click
import uvicorn

from brokerhooks.app import create_app
from brokerhooks.cli.base import Context, _safe_url, pass_context
from brokerhooks.store import migrate as migrations
from brokerhooks.store.database import make_engine


@click.command()
@pass_context
def migrate(context: Context) -> None:
    """Bring the database schema up to date."""
    settings = context.settings
    engine = make_engine(settings)
    before = migrations.current_revision(engine)
    migrations.upgrade(engine)
    after = migrations.current_revision(engine)
    where = _safe_url(settings.database_url)
    if before == after:
        click.echo(f"{where}: schema already at {after}")
    else:
        click.echo(f"{where}: schema migrated from {before or 'empty'} to {after}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@pass_context
def serve(context: Context, host: str, port: int) -> None:
    """Serve the webhook endpoints, health checks and metrics."""
    settings = context.settings
    context.engine  # noqa: B018 - checks (and on SQLite applies) migrations
    app = create_app(settings)
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
