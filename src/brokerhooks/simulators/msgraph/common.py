"""Pieces every part of the simulator uses: Graph's error, ids and times."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]


class GraphFault(Exception):
    """A Graph error answer: status, Graph's ``error.code`` and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def graph_timestamp(moment: datetime | None = None) -> str:
    """A timestamp as Graph writes it: seven fractional digits and ``Z``."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def new_id(prefix: str = "") -> str:
    """An opaque id. Graph's Outlook ids are long base64 strings (look-alike)."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()


class Answer:
    """What a handler answers: a status, a JSON or bytes body, and headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: JSON | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
