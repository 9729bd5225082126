"""``/rules``: the broker's rules, sent and kept as YAML.

A request body is a rule file, as docs/rules.md describes it (``rules:``
and a list of rules), sent as text (``Content-Type: application/yaml``).
It is validated with the broker's connection names, exactly as
``brokerhooks rules load`` does; a file that fails gets 422 with every
problem.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection

from brokerhooks.api.auth import Caller, CurrentBroker, RuntimeDep
from brokerhooks.api.errors import ApiError, documented, not_found
from brokerhooks.api.params import RuleIdPath, UtcDatetime
from brokerhooks.api.schemas import (
    BacktestEvent,
    BacktestReport,
    RuleInfo,
    RuleList,
    RuleProblem,
    Trace,
    ValidationReport,
)
from brokerhooks.errors import NotFound
from brokerhooks.pipeline.backtest import BacktestEntry, backtest
from brokerhooks.pipeline.rulebook import RuleSource, save_rule_source, split_rule_file
from brokerhooks.rules.errors import InvalidRules, RuleError
from brokerhooks.rules.validate import load_rules, validate_rules
from brokerhooks.runtime import Runtime
from brokerhooks.store import rules as store
from brokerhooks.store.brokers import get_broker_by_id
from brokerhooks.store.connections import list_m365_connections
from brokerhooks.store.database import transaction
from brokerhooks.store.rules import StoredRule
from brokerhooks.store.types import utcnow

router = APIRouter(prefix="/rules", tags=["rules"])

MAX_RULE_FILE_BYTES: Final = 256 * 1024
SOURCE_NAME: Final = "request body"
# The lengths of the rules table's rule_id and name columns.
_MAX_RULE_ID: Final = 100
_MAX_NAME: Final = 200
EXAMPLE: Final = """\
rules:
  - id: approved-task
    trigger: dealChangesStage
    condition: changes.stage.to.name == "6. Approved"
    actions:
      - kind: write_file
        params:
          path: "approved/{{ deal.id }}.txt"
          content: "{{ deal.name }} was approved"
"""
RULE_FILE_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "description": "A rule file (YAML), as docs/rules.md describes it.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}, "example": EXAMPLE}
        },
    }
}


async def rule_file(request: Request) -> str:
    """The request body as text, read up to ``MAX_RULE_FILE_BYTES``."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_RULE_FILE_BYTES:
            raise ApiError(
                413,
                "too_large",
                f"a rule file is at most {MAX_RULE_FILE_BYTES} bytes; "
                "split it and send the parts one by one",
            )
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            400, "invalid_request", "the body must be a YAML rule file in UTF-8"
        ) from None


RuleFile = Annotated[str, Depends(rule_file)]


def _info(stored: StoredRule) -> RuleInfo:
    return RuleInfo(
        id=stored.rule_id,
        name=stored.name or None,
        enabled=stored.enabled,
        updated_at=stored.updated_at,
        source=stored.source,
    )


def _connection_names(connection: Connection, broker_id: str) -> list[str]:
    return [c.name for c in list_m365_connections(connection, broker_id=broker_id)]


def _owned_rule(connection: Connection, caller: Caller, rule_id: str) -> StoredRule:
    try:
        return store.get_rule(connection, caller.broker_id, rule_id)
    except NotFound:
        raise not_found(f"rule {rule_id}") from None


def _checked(runtime: Runtime, caller: Caller, text: str) -> list[RuleSource]:
    """The rules of a file that passed validation; InvalidRules otherwise.

    Validation runs outside any transaction: on SQLite a writer's lock held
    that long would hold up ingest.
    """
    with transaction(runtime.engine) as connection:
        connections = _connection_names(connection, caller.broker_id)
    # TODO: split_rule_file fails on a file holding no document (`null`, a
    # comment alone), which validation passes as no rules; until it returns
    # [] for one, the file is loaded first, and so validated twice.
    if not load_rules(text, source_name=SOURCE_NAME, connections=connections).rules:
        raise InvalidRules(
            [_problem(None, "rules", "the file holds no rules", "add a rule")]
        )
    sources = split_rule_file(text, source_name=SOURCE_NAME, connections=connections)
    problems = [problem for source in sources for problem in _storable(source)]
    if problems:
        raise InvalidRules(problems)
    return sources


def _storable(source: RuleSource) -> list[RuleError]:
    """What the store's columns cannot hold, which validation lets through."""
    problems = []
    if len(source.rule_id) > _MAX_RULE_ID:
        problems.append(
            _problem(
                source.rule_id[:40] + "...",
                "id",
                f"the id is longer than {_MAX_RULE_ID} characters",
                "choose a shorter id",
            )
        )
    name = source.name or ""
    if len(name) > _MAX_NAME or "\x00" in name:
        problems.append(
            _problem(
                source.rule_id,
                "name",
                f"the name is longer than {_MAX_NAME} characters or holds a NUL",
                "shorten the name and remove control characters",
            )
        )
    return problems


def _problem(rule: str | None, field: str, problem: str, fix: str) -> RuleError:
    return RuleError(
        rule=rule, step=None, field=field, problem=problem, fix=fix, source=SOURCE_NAME
    )


def _save(connection: Connection, caller: Caller, source: RuleSource) -> RuleInfo:
    save_rule_source(connection, caller.broker_id, source)
    return _info(store.get_rule(connection, caller.broker_id, source.rule_id))


@router.get("", response_model=RuleList, summary="List the broker's rules")
def list_rules(caller: CurrentBroker, runtime: RuntimeDep) -> RuleList:
    with transaction(runtime.engine) as connection:
        stored = store.list_rules(connection, caller.broker_id)
    return RuleList(items=[_info(rule) for rule in stored])


@router.post(
    "",
    response_model=RuleList,
    status_code=201,
    responses=documented(409, 413, 422),
    summary="Add the rules of a rule file",
    description="Every rule of the file is added; 409 (and nothing saved) "
    "when one of their ids is taken. Replace a rule with PUT.",
    openapi_extra=RULE_FILE_BODY,
)
def create_rules(
    caller: CurrentBroker, text: RuleFile, runtime: RuntimeDep
) -> RuleList:
    sources = _checked(runtime, caller, text)
    with transaction(runtime.engine, write=True) as connection:
        taken = {
            rule.rule_id for rule in store.list_rules(connection, caller.broker_id)
        }
        clashes = sorted(taken.intersection(source.rule_id for source in sources))
        if clashes:
            raise ApiError(
                409,
                "conflict",
                f"the broker already has rule(s) {', '.join(clashes)}; "
                "replace each with PUT /api/v1/rules/{id}",
            )
        saved = [_save(connection, caller, source) for source in sources]
    return RuleList(items=saved)


@router.post(
    "/validate",
    response_model=ValidationReport,
    responses=documented(413),
    summary="Check a rule file without saving it",
    description="Every problem is listed with its rule, step, field and fix.",
    openapi_extra=RULE_FILE_BODY,
)
def validate(
    caller: CurrentBroker, text: RuleFile, runtime: RuntimeDep
) -> ValidationReport:
    with transaction(runtime.engine) as connection:
        names = _connection_names(connection, caller.broker_id)
    errors = validate_rules(text, source_name=SOURCE_NAME, connections=names)
    problems = [RuleProblem.of(error) for error in errors]
    return ValidationReport(valid=not problems, errors=problems)


@router.post(
    "/test",
    response_model=BacktestReport,
    responses=documented(413, 422),
    summary="Back-test a rule file against stored events",
    description="What the file's rules would have done with the broker's "
    "processed events since `since`, each evaluated with the snapshots and "
    "changes it had. Nothing is performed and nothing is saved.",
    openapi_extra=RULE_FILE_BODY,
)
def backtest_rules(
    caller: CurrentBroker,
    text: RuleFile,
    runtime: RuntimeDep,
    since: Annotated[
        UtcDatetime | None,
        Query(description="Events received at or after (ISO 8601); default 30 days."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=5000, description="How many events, at most.")
    ] = 1000,
) -> BacktestReport:
    rules = load_rules(text, source_name=SOURCE_NAME).rules
    start = since if since is not None else utcnow() - timedelta(days=30)
    with transaction(runtime.engine) as connection:
        broker = get_broker_by_id(connection, caller.broker_id)
        report = backtest(
            connection,
            broker,
            rules,
            since=start,
            limit=limit,
            timezone=runtime.settings.timezone,
        )
    return BacktestReport(
        since=start,
        evaluated=len(report.entries),
        fired=report.fired,
        events=[_tested(entry) for entry in report.entries if entry.verdicts],
    )


def _tested(entry: BacktestEntry) -> BacktestEvent:
    traces = [
        Trace.model_validate(verdict.decision.as_trace())
        if verdict.decision is not None
        else Trace(rule=verdict.rule_id, error=verdict.error)
        for verdict in entry.verdicts
    ]
    return BacktestEvent(
        event=entry.event.id,
        type=entry.event.type,
        received_at=entry.event.received_at,
        runs=traces,
    )


@router.get(
    "/{rule_id}", response_model=RuleInfo, responses=documented(404), summary="One rule"
)
def get_rule(
    rule_id: RuleIdPath, caller: CurrentBroker, runtime: RuntimeDep
) -> RuleInfo:
    with transaction(runtime.engine) as connection:
        return _info(_owned_rule(connection, caller, rule_id))


@router.put(
    "/{rule_id}",
    response_model=RuleInfo,
    summary="Replace a rule",
    responses=documented(404, 413, 422),
    description="The file must hold exactly this one rule. Its `enabled` "
    "(default true) replaces the stored one.",
    openapi_extra=RULE_FILE_BODY,
)
def replace_rule(
    rule_id: RuleIdPath, caller: CurrentBroker, text: RuleFile, runtime: RuntimeDep
) -> RuleInfo:
    with transaction(runtime.engine) as connection:
        _owned_rule(connection, caller, rule_id)
    sources = _checked(runtime, caller, text)
    if [source.rule_id for source in sources] != [rule_id]:
        raise InvalidRules(
            [
                _problem(
                    None,
                    "rules",
                    f"the file must hold one rule, with the id {rule_id}",
                    f"send only the rule {rule_id}; add others with POST",
                )
            ]
        )
    with transaction(runtime.engine, write=True) as connection:
        _owned_rule(connection, caller, rule_id)  # not deleted meanwhile
        return _save(connection, caller, sources[0])


@router.delete(
    "/{rule_id}",
    status_code=204,
    responses=documented(404),
    summary="Delete a rule",
    description="Its past runs are kept.",
)
def delete_rule(
    rule_id: RuleIdPath, caller: CurrentBroker, runtime: RuntimeDep
) -> None:
    with transaction(runtime.engine, write=True) as connection:
        _owned_rule(connection, caller, rule_id)
        store.delete_rule(connection, caller.broker_id, rule_id)


def _toggle(caller: Caller, runtime: Runtime, rule_id: str, enabled: bool) -> RuleInfo:
    with transaction(runtime.engine, write=True) as connection:
        _owned_rule(connection, caller, rule_id)
        store.set_enabled(connection, caller.broker_id, rule_id, enabled)
        return _info(store.get_rule(connection, caller.broker_id, rule_id))


@router.post(
    "/{rule_id}/enable",
    response_model=RuleInfo,
    responses=documented(404),
    summary="Enable a rule",
)
def enable_rule(
    rule_id: RuleIdPath, caller: CurrentBroker, runtime: RuntimeDep
) -> RuleInfo:
    return _toggle(caller, runtime, rule_id, True)


@router.post(
    "/{rule_id}/disable",
    response_model=RuleInfo,
    responses=documented(404),
    summary="Disable a rule",
    description="Its steps already scheduled still run; new events skip it.",
)
def disable_rule(
    rule_id: RuleIdPath, caller: CurrentBroker, runtime: RuntimeDep
) -> RuleInfo:
    return _toggle(caller, runtime, rule_id, False)
