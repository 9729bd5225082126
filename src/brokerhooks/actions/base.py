"""What every action kind receives and returns.

An action is one step of a run: create a To Do task, send a mail, ... The
worker calls ``ActionKind.perform`` with an ``ActionContext``; the kind
does its one thing against the outside world and returns an
``ActionResult``. The worker keeps the idempotency ledger around it:

- before ``perform``, the ledger entry (key = event, rule, step) is marked
  running with a new attempt; after it, the entry is marked done with the
  result's ``remote_id`` and ``output``, in one transaction;
- an entry already done is never performed again (a retry or replay finds
  it and stops);
- an entry left running by a worker that died is performed again with
  ``ctx.unfinished`` set: the kind must then look for the object its
  earlier try may have made (by its idempotency key) before making one;
- a kind that works in two steps (make, then act on what was made) can
  ``remember`` the id of what it made before the second step; a later try
  finds it in ``ctx.made``.

Errors: raise ``brokerhooks.connectors.errors.TransientError`` to be tried
again later, ``PermanentError`` (or its subclasses, such as
``ReconnectRequired``) when retrying cannot help; the message is shown to
people. Anything else is retried as if transient.

Each kind states its ``guarantee``: ``exactly-once`` when a retry can
never create a second object, or ``at-least-once`` with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx

from brokerhooks.config import Settings
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.salestrekker.client import SalesTrekkerClient


@dataclass(frozen=True, slots=True)
class PriorAction:
    """What an earlier run of the same rule and step did for the same deal.

    Lets an action keep one remote object per deal in step with the deal
    (the calendar event of a settlement date) instead of making a new one
    for each event.
    """

    event_id: str
    remote_id: str | None
    output: Mapping[str, Any]


class Services(Protocol):
    """The outside world, as the worker lends it to an action."""

    settings: Settings
    http: httpx.AsyncClient
    """For outbound HTTP (http_request, onedrive_upload from a URL)."""

    def graph(self, connection: str) -> AbstractAsyncContextManager[GraphClient]:
        """A Graph client for the broker's Microsoft 365 connection by name.

        Raises PermanentError naming the connection when it does not exist.
        """
        ...

    def salestrekker(self) -> SalesTrekkerClient:
        """The broker's SalesTrekker client."""
        ...


@dataclass(frozen=True, slots=True)
class ActionContext:
    key: str
    """The idempotency key: ``<event id>:<rule id>:<step id>``."""
    broker_id: str
    event_id: str
    deal_id: str | None
    rule_id: str
    step_id: str
    kind: str
    connection: str | None
    """The Microsoft 365 connection name, for the kinds that use one."""
    params: Mapping[str, Any]
    """Rendered params, JSON values: dates are ISO 8601 strings with offset,
    addresses lists of strings, under the kind's param names."""
    event: Mapping[str, Any]
    """The event as rules see it (id, type, entity_id, deal_id, payload...)."""
    services: Services
    attempt: int = 1
    unfinished: bool = False
    """An earlier try of this entry may have acted before its worker died."""
    prior: PriorAction | None = None
    """The same rule and step's last done action for the same deal, if any."""
    made: str | None = None
    """The remote id an earlier try of this entry remembered, if any."""
    remember: Callable[[str | None], Awaitable[None]] | None = None
    """Store a remote id in the ledger entry now (None forgets it)."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    remote_id: str | None = None
    """The id of what was made (task, event, drive item, note, ...)."""
    output: Mapping[str, Any] = field(default_factory=dict)
    """What a person reading the trace wants to see (JSON values)."""


class ActionKind(Protocol):
    name: ClassVar[str]
    guarantee: ClassVar[str]
    """``exactly-once`` or ``at-least-once: <why>``."""

    async def perform(self, ctx: ActionContext) -> ActionResult: ...
