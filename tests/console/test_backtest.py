"""Back-tests, shared by ``brokerhooks rules test`` and the rule editor."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, update

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.pipeline.backtest import backtest
from brokerhooks.rules.validate import load_rules
from brokerhooks.security.secrets import Vault
from brokerhooks.store import processing
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker, queue_event

RULES = """\
rules:
  - id: approved
    trigger: dealChangesStage
    condition: has(changes.stage) && changes.stage.to.name == "6. Approved"
    actions:
      - kind: salestrekker_note
        params:
          content: "Approved: {{ deal.name }}"
"""


def processed_stage_change(engine: Engine, broker_id: str, stage: str) -> str:
    """A dealChangesStage event as processing leaves it."""
    deal = str(uuid.uuid4())
    event_id = queue_event(engine, broker_id, "dealChangesStage", deal)
    data = {"id": deal, "name": "Nguyen refinance", "stage": {"id": "s", "name": stage}}
    changes = {"stage": {"from": {"id": "f", "name": "4. Lodged"}, "to": data["stage"]}}
    with transaction(engine, write=True) as connection:
        snapshot = processing.add_snapshot(
            connection,
            broker_id=broker_id,
            subject="deal",
            entity_id=deal,
            event_id=event_id,
            data=data,
        )
        connection.execute(
            update(Event)
            .where(Event.id == event_id)
            .values(status="done", snapshot_id=snapshot, changes=json.dumps(changes))
        )
    return event_id


def test_a_back_test_evaluates_processed_events(
    settings: Settings, engine: Engine
) -> None:
    broker = add_broker(engine, Vault(settings.fernet_keys))
    approved = processed_stage_change(engine, broker.id, "6. Approved")
    processed_stage_change(engine, broker.id, "5. Settled")
    queue_event(engine, broker.id, "dealChangesStage", str(uuid.uuid4()))
    rules = load_rules(RULES).rules

    with transaction(engine) as connection:
        report = backtest(
            connection,
            broker,
            rules,
            since=utcnow() - timedelta(days=1),
            limit=100,
            timezone="Australia/Sydney",
        )

    assert len(report.entries) == 2  # the unprocessed event is left out
    assert report.fired == 1
    [fired] = [entry for entry in report.entries if entry.fired]
    assert fired.event.id == approved
    [verdict] = fired.verdicts
    assert verdict.decision is not None
    assert verdict.decision.steps[0].params == {"content": "Approved: Nguyen refinance"}


def test_the_command_line_prints_the_same_back_test(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    broker = add_broker(engine, Vault(settings.fernet_keys))
    approved = processed_stage_change(engine, broker.id, "6. Approved")
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(RULES)

    result = CliRunner().invoke(
        cli, ["rules", "test", str(rule_file), "--broker", "acme", "--since", "1d"]
    )

    assert result.exit_code == 0, result.output
    assert f"event {approved} dealChangesStage" in result.output
    assert "content: Approved: Nguyen refinance" in result.output
    assert "rules fired 1 time(s); nothing was performed." in result.output
