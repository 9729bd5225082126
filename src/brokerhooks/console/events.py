"""Events: the list with its filters, one event in full, and replays."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from starlette.datastructures import QueryParams
from starlette.responses import Response

from brokerhooks.console.web import Page
from brokerhooks.ingest.salestrekker_events import EVENT_SUBJECTS
from brokerhooks.store import browse, processing
from brokerhooks.store.browse import EventFilter
from brokerhooks.store.events import event_details
from brokerhooks.store.models import EVENT_STATUSES

PAGE_SIZE = 50
ATTENTION_PAGE_SIZE = 25
# How many earlier pages "Previous" can walk back through.
MAX_TRAIL = 100
PARKED = ("needs_attention", "dead")
BULK_REPLAY_LIMIT = 1000


@dataclass
class Filters:
    """The events list's filters as typed, and the problems found in them."""

    type: str = ""
    status: str = ""
    deal: str = ""
    since: str = ""
    until: str = ""
    text: str = ""
    problems: list[str] = field(default_factory=list)

    def as_query(self) -> dict[str, str]:
        return {
            "type": self.type,
            "status": self.status,
            "deal": self.deal,
            "since": self.since,
            "until": self.until,
            "text": self.text,
        }


def parse_filters(
    params: QueryParams, zone: str, broker_id: str | None
) -> tuple[Filters, EventFilter]:
    """The filters from the query string; a bad one is reported, not applied."""
    typed = Filters(
        type=params.get("type", "").strip()[:100],
        status=params.get("status", "").strip(),
        deal=params.get("deal", "").strip(),
        since=params.get("since", "").strip(),
        until=params.get("until", "").strip(),
        text=params.get("text", "")[:200],
    )
    status = typed.status or None
    if status is not None and status not in EVENT_STATUSES:
        typed.problems.append(f"{typed.status!r} is not an event status.")
        status = None
    deal = _uuid(typed.deal)
    if typed.deal and deal is None:
        typed.problems.append(
            "The deal id must be a UUID, like 0b0c6a1e-8f0e-4a43-9d1e-3f3c8c9c1a10."
        )
    since = _day(typed.since, zone, typed, "From")
    until = _day(typed.until, zone, typed, "Until")
    return typed, EventFilter(
        broker_id=broker_id,
        type=typed.type or None,
        status=status,
        deal_id=deal,
        since=since,
        until=until + timedelta(days=1) if until is not None else None,
        text=typed.text.strip() or None,
    )


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def _day(value: str, zone: str, typed: Filters, label: str) -> datetime | None:
    """Midnight of a YYYY-MM-DD day in the console's time zone."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        typed.problems.append(f"{label}: {value!r} is not a date like 2025-03-14.")
        return None
    return day.replace(tzinfo=ZoneInfo(zone))


def _trail(params: QueryParams) -> tuple[str | None, list[str]]:
    """The cursor of this page and those of the pages before it."""
    before = _uuid(params.get("before", ""))
    back = [
        cursor
        for cursor in (
            _uuid(part) for part in params.get("back", "").split(",") if part
        )
        if cursor is not None
    ]
    return before, back[-MAX_TRAIL:]


async def events(page: Page) -> Response:
    params = page.request.query_params
    typed, where = parse_filters(params, page.settings.timezone, page.broker_id)
    before, back = _trail(params)
    records, cursor = await page.read(
        lambda connection: browse.page_events(
            connection, where, before=before, limit=PAGE_SIZE
        )
    )
    base = typed.as_query()
    newer = None
    if before is not None:
        newer = {
            **base,
            "before": back[-1] if back else None,
            "back": ",".join(back[:-1]),
        }
    older = None
    if cursor is not None:
        trail = [*back, before] if before is not None else back
        older = {**base, "before": cursor, "back": ",".join(trail[-MAX_TRAIL:])}
    return page.render(
        "events.html",
        section="events",
        filters=typed,
        records=records,
        newer=newer,
        older=older,
        event_types=sorted(EVENT_SUBJECTS, key=str.lower),
        statuses=EVENT_STATUSES,
        show_broker=page.broker_id is None,
    )


async def event(page: Page) -> Response:
    event_id = page.request.path_params["event_id"]

    def load(connection: Connection) -> dict[str, Any]:
        page.check_event(connection, event_id)
        return event_details(connection, event_id)

    details = await page.read(load)
    return page.render(
        "event.html",
        section="events",
        event=details,
        payload=json.dumps(details["payload"], indent=2, ensure_ascii=False),
        changes=_changes(details.get("changes")),
        runs=[_run(run) for run in details["runs"]],
    )


def _run(run: dict[str, Any]) -> dict[str, Any]:
    """A run with each step of its trace beside its ledger entry."""
    trace = run["trace"]
    actions = {action["step"]: action for action in run["actions"]}
    steps = [
        {"trace": step, "action": actions.pop(step.get("id"), None)}
        for step in trace.get("steps", [])
    ]
    # Ledger entries the trace does not list (an older rule's steps).
    steps += [{"trace": None, "action": action} for action in actions.values()]
    return {**run, "condition": trace.get("condition"), "steps": steps}


def _changes(changes: Any) -> list[tuple[str, Any, Any]]:
    if not isinstance(changes, dict):
        return []
    rows = []
    for name, change in sorted(changes.items()):
        if isinstance(change, dict):
            rows.append((name, change.get("from"), change.get("to")))
        else:
            rows.append((name, None, change))
    return rows


async def replay_event(page: Page) -> Response:
    event_id = page.request.path_params["event_id"]

    def replay(connection: Connection) -> bool:
        page.check_event(connection, event_id)
        return processing.replay(connection, event_id)

    queued = await page.write(replay)
    return page.redirect(
        f"/events/{event_id}", "replayed" if queued else "not-replayed"
    )


async def attention(page: Page) -> Response:
    """Events parked in needs_attention, or dead, with their last error."""
    status = page.request.query_params.get("status", "needs_attention")
    if status not in PARKED:
        status = "needs_attention"
    before, back = _trail(page.request.query_params)
    broker_id = page.broker_id

    def load(connection: Connection) -> dict[str, Any]:
        counts = browse.status_counts(connection, broker_id)
        records, cursor = browse.page_events(
            connection,
            EventFilter(broker_id=broker_id, status=status),
            before=before,
            limit=ATTENTION_PAGE_SIZE,
        )
        # The reason an event stopped is the error of its last attempt.
        reasons = {}
        for record in records:
            attempts = processing.attempts_of(connection, record.id)
            reasons[record.id] = attempts[-1]["error"] if attempts else None
        return {
            "counts": {name: counts.get(name, 0) for name in PARKED},
            "records": records,
            "cursor": cursor,
            "reasons": reasons,
        }

    data = await page.read(load)
    cursor = data.pop("cursor")
    newer = older = None
    if before is not None:
        newer = {
            "status": status,
            "before": back[-1] if back else None,
            "back": ",".join(back[:-1]),
        }
    if cursor is not None:
        trail = [*back, before] if before is not None else back
        older = {"status": status, "before": cursor, "back": ",".join(trail)}
    return page.render(
        "attention.html",
        section="attention",
        shown=status,
        newer=newer,
        older=older,
        show_broker=broker_id is None,
        **data,
    )


async def replay_many(page: Page) -> Response:
    """Replay the ticked events, or every event of the status shown."""
    status = page.form.get("status")
    if status not in PARKED:
        status = "needs_attention"
    broker_id = page.broker_id
    every = page.form.get("scope") == "all"
    chosen = list(dict.fromkeys(page.form.getlist("event")))[:BULK_REPLAY_LIMIT]

    def replay(connection: Connection) -> tuple[int, int]:
        if every:
            selected = processing.select_for_replay(
                connection,
                broker_id=broker_id,
                status=status,
                since=None,
                limit=BULK_REPLAY_LIMIT,
            )
        else:
            for event_id in chosen:
                page.check_event(connection, event_id)
            selected = chosen
        queued = sum(processing.replay(connection, event_id) for event_id in selected)
        return queued, len(selected) - queued

    queued, skipped = await page.write(replay)
    return page.redirect(
        "/attention", "bulk-replayed", status=status, queued=queued, skipped=skipped
    )
