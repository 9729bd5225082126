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
