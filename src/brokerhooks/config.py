"""Settings: one typed object, loaded once at start-up.

Values come from ``BROKERHOOKS_*`` environment variables, then an optional
``.env`` file in the working directory, then the defaults below.
"""

from __future__ import annotations

import os
import stat
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import structlog
from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from brokerhooks.errors import ConfigurationError

log = structlog.get_logger("brokerhooks.config")

# Values people paste from examples; never accepted as a real secret.
PLACEHOLDER_SECRETS = frozenset(
    {"", "change-me", "changeme", "secret", "placeholder", "xxx", "todo"}
)
DEV_KEY_FILE = "brokerhooks.key"


class Settings(BaseSettings):
    """Every setting of brokerhooks. See docs/operations.md for each one."""

    model_config = SettingsConfigDict(
        env_prefix="BROKERHOOKS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///brokerhooks.db"
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    public_url: str = "http://127.0.0.1:8000"
    forwarded_allow_ips: str = "127.0.0.1"

    # Ingest.
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    auth_failure_limit: int = Field(default=10, gt=0)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    auth_cooldown_seconds: float = Field(default=300.0, gt=0)
    broker_cache_seconds: float = Field(default=5.0, ge=0)
    write_batch_max: int = Field(default=500, gt=0)
    # How long a thread may keep the interpreter while another waits for it.
    switch_interval_ms: float = Field(default=1.0, gt=0, le=100)
    # Containers alive beyond those freed between the garbage collector's
    # youngest-generation passes (Python's default is 700).
    gc_threshold: int = Field(default=20_000, ge=700, le=1_000_000)

    # Storage.
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)

    # Logs.
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Worker.
    worker_concurrency: int = Field(default=4, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=8, gt=0)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=900.0, gt=0)
    coalesce_seconds: float = Field(default=3.0, ge=0)
    poll_seconds: float = Field(default=0.5, gt=0)

    # Rules and actions.
    timezone: str = "Australia/Sydney"
    files_folder: Path | None = None
    http_allow_private: bool = False
    action_timeout_seconds: float = Field(default=30.0, gt=0)

    # SalesTrekker.
    salestrekker_timeout_seconds: float = Field(default=15.0, gt=0)
    salestrekker_rate_per_second: float = Field(default=10.0, gt=0)
    workflow_cache_seconds: float = Field(default=300.0, ge=0)

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        if value.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def fernet_keys(self) -> list[bytes]:
        """The encryption keys, first one encrypting; resolved once."""
        return resolve_secret_keys(self)


def resolve_secret_keys(settings: Settings) -> list[bytes]:
    """Return the usable encryption keys, or stop with the setting to fix.

    In development with no key set, a key is generated once and kept in
    ``brokerhooks.key`` beside the database, with a warning.
    """
    raw = [key.get_secret_value() for key in settings.secret_keys]
    usable = [key for key in raw if key.lower() not in PLACEHOLDER_SECRETS]
    if len(usable) != len(raw) or not usable:
        if settings.env != "development":
            raise ConfigurationError(
                "BROKERHOOKS_SECRET_KEYS is missing or holds a placeholder. Set it "
                "to one or more comma-separated Fernet keys (generate one with "
                "`brokerhooks secrets generate`)."
            )
        return [_development_key(settings)]
    keys = [key.encode() for key in usable]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ConfigurationError(
                f"BROKERHOOKS_SECRET_KEYS: key {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes); generate one with "
                "`brokerhooks secrets generate`."
            ) from None
    return keys


def _development_key(settings: Settings) -> bytes:
    path = _data_dir(settings) / DEV_KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    path.write_bytes(key + b"\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    log.warning(
        "development_key_generated",
        path=str(path),
        hint="set BROKERHOOKS_SECRET_KEYS outside development",
    )
    return key


def _data_dir(settings: Settings) -> Path:
    """The folder of the SQLite file, or the working directory."""
    prefix = "sqlite:///"
    if settings.database_url.startswith(prefix):
        location = settings.database_url[len(prefix) :]
        if location and location != ":memory:":
            return Path(location).resolve().parent
    return Path.cwd()


def load_settings(**overrides: object) -> Settings:
    """Load the settings; raise ConfigurationError naming a bad setting."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as error:
        raise ConfigurationError(_describe(error)) from None
    settings.fernet_keys  # noqa: B018 - fail at start-up, not on first use
    return settings


def _describe(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    lines = []
    for item in errors():
        name = "BROKERHOOKS_" + "_".join(str(part) for part in item["loc"]).upper()
        lines.append(f"{name}: {item['msg']}")
    return "invalid settings: " + "; ".join(lines)
