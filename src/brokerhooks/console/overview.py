"""The overview: how the last day went, and what needs a person."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from starlette.responses import Response

from brokerhooks.console.chart import hourly_chart
from brokerhooks.console.web import Page
from brokerhooks.store import browse
from brokerhooks.store.connections import list_m365_connections
from brokerhooks.store.models import EVENT_STATUSES, M365_NEEDS_RECONNECT
from brokerhooks.store.types import utcnow


async def overview(page: Page) -> Response:
    broker_id = page.broker_id

    def load(connection: Connection) -> dict[str, Any]:
        counts = browse.status_counts(connection, broker_id)
        return {
            "counts": [(status, counts.get(status, 0)) for status in EVENT_STATUSES],
            "per_hour": browse.events_per_hour(connection, broker_id),
            "failed_runs": browse.failed_runs(
                connection, broker_id, since=utcnow() - timedelta(hours=24)
            ),
            "waiting_actions": browse.waiting_actions(connection, broker_id),
            "reconnect": [
                record
                for record in list_m365_connections(connection, broker_id=broker_id)
                if record.status == M365_NEEDS_RECONNECT
            ],
            "parked": counts.get("needs_attention", 0),
            "dead": counts.get("dead", 0),
        }

    data = await page.read(load)
    chart = hourly_chart(data.pop("per_hour"), page.settings.timezone)
    return page.render("overview.html", section="overview", chart=chart, **data)
