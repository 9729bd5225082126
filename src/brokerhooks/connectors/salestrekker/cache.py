"""Workflows and labels, kept in the process for a while.

A deal names its workflow, stage and labels by id only. Workflows and
labels change rarely, so each broker's are fetched once per ``ttl`` and
shared by every client in the process. A stage or label id that a cached
copy does not know makes the client fetch once more (see the client).

The cache also remembers, for as long, which brokers' tenants rejected an
operation that has a fallback, so that the next calls send the fallback
straight away and the full operation is tried again after ``ttl``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

Workflow = dict[str, Any]
Label = dict[str, Any]
T = TypeVar("T")


class WorkflowCache:
    """Per-broker workflows and labels, each kept ``ttl`` seconds.

    ``ttl`` 0 keeps nothing. Safe to share between clients, event loops and
    threads.
    """

    def __init__(
        self, ttl: float = 300.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl < 0:
            raise ValueError(f"ttl must be 0 or more, got {ttl}")
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._workflows: dict[tuple[str, str], tuple[float, Workflow]] = {}
        self._labels: dict[str, tuple[float, list[Label]]] = {}
        self._fallbacks: dict[tuple[str, str], tuple[float, bool]] = {}

    def workflow(self, broker_id: str, workflow_id: str) -> Workflow | None:
        with self._lock:
            return self._fresh(self._workflows.get((broker_id, workflow_id)))

    def put_workflow(self, broker_id: str, workflow_id: str, value: Workflow) -> None:
        with self._lock:
            self._workflows[(broker_id, workflow_id)] = (self._expiry(), value)

    def labels(self, broker_id: str) -> list[Label] | None:
        with self._lock:
            return self._fresh(self._labels.get(broker_id))

    def put_labels(self, broker_id: str, value: list[Label]) -> None:
        with self._lock:
            self._labels[broker_id] = (self._expiry(), value)

    def falls_back(self, broker_id: str, operation: str) -> bool:
        """Whether the broker's tenant rejected ``operation`` lately."""
        with self._lock:
            return bool(self._fresh(self._fallbacks.get((broker_id, operation))))

    def put_fallback(self, broker_id: str, operation: str) -> None:
        with self._lock:
            self._fallbacks[(broker_id, operation)] = (self._expiry(), True)

    def _expiry(self) -> float:
        return self._clock() + self.ttl

    def _fresh(self, entry: tuple[float, T] | None) -> T | None:
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]
