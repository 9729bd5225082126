"""No API key in logs, CLI output or stored rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from brokerhooks.store.models import Base
from tests.servers import ServiceProcess

KEY = "leak-probe-3b9f0e1d2c4a5b6c7d8e9f0a1b2c3d4e"
ROTATED = "leak-probe-rotated-77aa88bb99cc00dd11ee22ff"


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "brokerhooks", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return result.stdout + result.stderr


def test_the_key_never_reaches_logs_output_or_rows(
    settings_env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    output = _cli(
        settings_env,
        "brokers",
        "add",
        "acme",
        "--salestrekker-url",
        "https://acme.salestrekker.com",
        stdin=KEY + "\n",
    )
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log_file:
        service = ServiceProcess(settings_env, "--no-worker").start(stderr=log_file)
        try:
            hooks = service.url + "/hooks/salestrekker"
            body = {
                "event": "dealCreated",
                "id": "0b0c6a1e-8f0e-4a43-9d1e-3f3c8c9c1a10",
            }
            accepted = httpx.post(
                hooks, json=body, headers={"Authorization": f"Salestrekker {KEY}"}
            )
            rejected = httpx.post(
                hooks,
                json={"event": "dealCreated", "id": "nope"},
                headers={"Authorization": f"Salestrekker {KEY}"},
            )
            wrong = httpx.post(
                hooks, json=body, headers={"Authorization": f"Salestrekker {KEY}x"}
            )
            bearer = httpx.post(
                hooks, json=body, headers={"Authorization": f"Bearer {KEY}"}
            )
        finally:
            service.stop()
    output += _cli(settings_env, "events", "list", "--json")
    output += _cli(settings_env, "brokers", "list", "--json")
    output += _cli(settings_env, "brokers", "rotate-key", "acme", stdin=ROTATED + "\n")

    assert [r.status_code for r in (accepted, rejected, wrong, bearer)] == [
        200,
        400,
        401,
        401,
    ]
    logs = log_path.read_text()
    assert '"event": "delivery"' in logs  # the log was captured
    assert logs.count('"event": "delivery"') == 4
    for secret in (KEY, ROTATED):
        assert secret not in logs
        assert secret not in output
        assert secret not in _all_rows(engine)


def _all_rows(engine: Engine) -> str:
    """Every stored value of every table, as one text to search."""
    parts: list[str] = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                parts.extend(str(value) for value in row)
    assert parts, "nothing was stored"
    return "\n".join(parts)
