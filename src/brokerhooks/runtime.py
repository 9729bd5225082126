"""The long-lived parts of a running service, built once and shared."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.ingest.auth import BrokerDirectory, FailureThrottle, SharedFailures
from brokerhooks.metrics import Metrics
from brokerhooks.security.secrets import Vault
from brokerhooks.store.database import make_engine
from brokerhooks.store.writer import GroupWriter


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    vault: Vault
    writer: GroupWriter
    directory: BrokerDirectory
    throttle: FailureThrottle
    failures: SharedFailures
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None) -> Runtime:
        engine = engine if engine is not None else make_engine(settings)
        vault = Vault(settings.fernet_keys)
        failures = SharedFailures(engine)
        return cls(
            settings=settings,
            engine=engine,
            vault=vault,
            writer=GroupWriter(engine, batch_max=settings.write_batch_max),
            directory=BrokerDirectory(engine, vault, ttl=settings.broker_cache_seconds),
            throttle=FailureThrottle(
                limit=settings.auth_failure_limit,
                window=settings.auth_failure_window_seconds,
                cooldown=settings.auth_cooldown_seconds,
                shared=failures,
                scope="ingest_key",
            ),
            failures=failures,
        )
