"""What several action kinds share: params, dates, Graph, and retry hints.

``read_params`` checks a step's rendered params against its kind's model,
so each kind reads typed values; a mismatch is a PermanentError naming the
param (never its value, which may be a secret).
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from brokerhooks.actions.base import ActionContext
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.rules.model import Params

P = TypeVar("P", bound=Params)


def read_params(ctx: ActionContext, model: type[P]) -> P:
    """The step's params as ``model``; PermanentError naming what is wrong."""
    try:
        return model.model_validate(jsonable(ctx.params))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'params'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        )
        raise PermanentError(
            f"step {ctx.step_id} ({ctx.kind}) got params it cannot use: {problems}; "
            "check the rule file with `brokerhooks rules validate`"
        ) from None


def moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date-time with an offset, as rendered params carry it."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PermanentError(
            f"params.{name}: {value!r} is not an ISO 8601 date and time"
        ) from None
    if parsed.tzinfo is None:
        raise PermanentError(
            f"params.{name}: {value!r} has no time zone offset; rendered dates "
            "always carry one, so the step's params did not come from the rules engine"
        )
    return parsed


def may_have_acted(ctx: ActionContext) -> bool:
    """Whether an earlier attempt of this entry may have reached the outside world.

    A worker that died leaves ``unfinished``; an attempt whose answer was lost
    (a timeout after the request left) ends in a TransientError and comes
    back as a later attempt. Both must look before they make.
    """
    return ctx.unfinished or ctx.attempt > 1


def graph(ctx: ActionContext) -> AbstractAsyncContextManager[GraphClient]:
    """The Graph client of the step's Microsoft 365 connection."""
    if ctx.connection is None:
        raise PermanentError(
            f"step {ctx.step_id} ({ctx.kind}) has no Microsoft 365 connection; "
            "add connection: <name> to the step"
        )
    return ctx.services.graph(ctx.connection)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the ``Retry-After`` header asks for (a number or a date)."""
    header = response.headers.get("retry-after")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def excerpt(text: str, limit: int = 200) -> str:
    """The start of a response body, on one line, for a message."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def jsonable(value: Any) -> Any:
    """``value`` as JSON values: dates as ISO 8601, spans as ``<n>s``, maps as dicts.

    Params and events are meant to hold JSON values already; a caller that
    hands a datetime or a read-only mapping still gets what it meant.
    """
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value
