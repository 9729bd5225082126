"""Prometheus metrics, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """The metrics of one app; a registry each, so tests stay independent."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "brokerhooks_deliveries",
            "Deliveries received at an ingest endpoint, by source and outcome.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.ingest_latency = Histogram(
            "brokerhooks_ingest_latency_seconds",
            "Time from a delivery's arrival to its answer, by source.",
            ["source"],
            buckets=(
                0.0005,
                0.001,
                0.002,
                0.005,
                0.01,
                0.02,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
            ),
            registry=self.registry,
        )
        self.jobs = Counter(
            "brokerhooks_jobs",
            "Jobs finished by the worker, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )


class SourceMetrics:
    """The ingest metrics of one source, their labelled children kept.

    ``labels()`` looks its child up under a lock on every call; an ingest
    endpoint counts every delivery, so it keeps the children it has used.
    A child is made on first use, as ``labels()`` would make it.
    """

    def __init__(self, metrics: Metrics, source: str) -> None:
        self._metrics = metrics
        self._source = source
        self._latency: Histogram | None = None
        self._deliveries: dict[str, Counter] = {}

    @property
    def latency(self) -> Histogram:
        if self._latency is None:
            self._latency = self._metrics.ingest_latency.labels(self._source)
        return self._latency

    def delivered(self, outcome: str) -> None:
        """Count one delivery with ``outcome``."""
        counter = self._deliveries.get(outcome)
        if counter is None:
            counter = self._metrics.deliveries.labels(self._source, outcome)
            self._deliveries[outcome] = counter
        counter.inc()
