"""Query and path parameters shared by the routes, with their limits.

Each is checked before it reaches the store, so that what the database
would refuse (a NUL character on PostgreSQL, an integer beyond 64 bits, a
text longer than its column, a time without a zone) is a 400 instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query, Request
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from brokerhooks.api.errors import ApiError

MAX_BIGINT = 2**63 - 1
NO_NUL = r"^[^\x00]*$"
RULE_ID = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"


def one_value_each(request: Request) -> None:
    """Refuse a query parameter given twice, rather than pick one of its values."""
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ApiError(
            400, "invalid_request", f"give each parameter once: {', '.join(repeated)}"
        )


def _not_a_number(value: object) -> object:
    """Refuse epoch numbers, which pydantic would take for times."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
    elif not isinstance(value, int | float):
        return value
    raise ValueError("give an ISO 8601 time with its zone: 2025-03-14T09:30:00Z")


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once moved to UTC") from None


UtcDatetime = Annotated[
    AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_utc)
]

Limit = Annotated[
    int, Query(ge=1, le=200, description="How many items per page, at most.")
]
RuleIdPath = Annotated[
    str,
    Path(
        pattern=RULE_ID,
        max_length=100,
        description="The rule's id, e.g. `approved-task`.",
    ),
]
RunIdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT - 1, description="The run's id.")]
