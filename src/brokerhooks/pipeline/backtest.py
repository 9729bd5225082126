"""Back-tests: what rules would have done with a broker's stored events.

Nothing is performed. Each processed event is evaluated again, with the
snapshots and changes it had when it was processed, against the rules
given (typically a rule file not yet saved). A Microsoft 365 event gets
the deal and contact it was matched to as they were stored then (their
snapshots taken before its own). The command line
(``brokerhooks rules test``) and the console show the same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from brokerhooks.ingest.msgraph_events import graph_subject_of
from brokerhooks.pipeline.decide import Verdict, decide, rule_context
from brokerhooks.pipeline.enrich import Fetched, from_snapshots
from brokerhooks.pipeline.graph_source import (
    GraphFetched,
    graph_context,
    match_deal_and_contact,
)
from brokerhooks.rules.model import Rule
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.processing import EventToProcess, processed_events


@dataclass(frozen=True, slots=True)
class BacktestEntry:
    """One stored event and what each triggered rule decided for it."""

    event: EventToProcess
    verdicts: list[Verdict]

    @property
    def fired(self) -> bool:
        return any(v.decision is not None and v.decision.fired for v in self.verdicts)


@dataclass(frozen=True, slots=True)
class BacktestReport:
    since: datetime
    entries: list[BacktestEntry]

    @property
    def fired(self) -> int:
        """How many times a rule fired, over every event."""
        return sum(
            1
            for entry in self.entries
            for verdict in entry.verdicts
            if verdict.decision is not None and verdict.decision.fired
        )


def backtest(
    connection: Connection,
    broker: BrokerRecord,
    rules: Sequence[Rule],
    *,
    since: datetime,
    limit: int,
    timezone: str,
) -> BacktestReport:
    """Evaluate ``rules`` on the broker's processed events since ``since``.

    At most ``limit`` events, oldest first. Rules are evaluated as given: a
    rule with ``enabled: false`` decides ``disabled``.
    """
    events = processed_events(connection, broker_id=broker.id, since=since, limit=limit)
    broker_vars = {"id": broker.id, "name": broker.name, "timezone": timezone}
    entries = []
    for stored in events:
        event = stored.event
        graph_subject = graph_subject_of(event.type)
        fetched: Fetched
        if graph_subject is None:
            fetched = from_snapshots(event, stored.snapshots)
        else:
            fetched = GraphFetched(
                graph_subject, event.entity_id, stored.snapshots.get(graph_subject, {})
            )
            match_deal_and_contact(connection, event, fetched, before=event.snapshot_id)
        variables = rule_context(
            event,
            fetched,
            stored.previous,
            stored.changes,
            broker_vars,
            event.received_at,
            stored.caused_by,
        )
        if isinstance(fetched, GraphFetched):
            variables = graph_context(variables, fetched)
        triggered = [rule for rule in rules if event.type in rule.trigger]
        entries.append(BacktestEntry(event, decide(triggered, variables)))
    return BacktestReport(since=since, entries=entries)
