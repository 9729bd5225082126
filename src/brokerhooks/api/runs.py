"""``/runs``: evaluations of the broker's rules, with traces and actions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from brokerhooks.api.auth import CurrentBroker, RuntimeDep
from brokerhooks.api.errors import documented, not_found
from brokerhooks.api.params import MAX_BIGINT, RULE_ID, Limit, RunIdPath
from brokerhooks.api.schemas import RunDetail, RunPage, RunSummary
from brokerhooks.store.browse import page_runs
from brokerhooks.store.database import transaction
from brokerhooks.store.runs import runs_of_event

router = APIRouter(prefix="/runs", tags=["runs"])

RunStatus = Literal["no_action", "pending", "succeeded", "failed"]


def _summary(row: dict[str, Any]) -> RunSummary:
    return RunSummary.model_validate({**row, "rule": row["rule_id"]})


@router.get("", response_model=RunPage, summary="List runs, newest first")
def list_runs(
    caller: CurrentBroker,
    runtime: RuntimeDep,
    rule: Annotated[
        str | None,
        Query(pattern=RULE_ID, max_length=100, description="A rule's id."),
    ] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_BIGINT, description="The `next` of the previous page."),
    ] = None,
    limit: Limit = 50,
) -> RunPage:
    with transaction(runtime.engine) as connection:
        rows, cursor = page_runs(
            connection,
            broker_id=caller.broker_id,
            rule_id=rule,
            status=status,
            before=before,
            limit=limit,
        )
    return RunPage(items=[_summary(row) for row in rows], next=cursor)


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    responses=documented(404),
    summary="A run with its trace and its actions",
)
def get_run(run_id: RunIdPath, caller: CurrentBroker, runtime: RuntimeDep) -> RunDetail:
    with transaction(runtime.engine) as connection:
        # The newest of the broker's runs up to this id is the run, if the
        # broker has it.
        rows, _ = page_runs(
            connection, broker_id=caller.broker_id, before=run_id + 1, limit=1
        )
        if not rows or rows[0]["id"] != run_id:
            raise not_found(f"run {run_id}")
        summary = _summary(rows[0])
        details = next(
            run
            for run in runs_of_event(connection, summary.event_id)
            if run["id"] == run_id
        )
    return RunDetail.model_validate(
        {
            **summary.model_dump(),
            "trace": details["trace"],
            "actions": details["actions"],
        }
    )
