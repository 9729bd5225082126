"""The interpreter settings of a serving process: switch interval and GC."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.interpreter import prepare_to_serve

# The module; the package's ``serve`` is the command.
serve_commands = importlib.import_module("brokerhooks.cli.serve")


@pytest.fixture
def interpreter_restored() -> Iterator[None]:
    """Give the test process its own interpreter settings back afterwards."""
    threshold = gc.get_threshold()
    interval = sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def tracked(thing: object) -> bool:
    """Whether the collector would walk ``thing`` (frozen objects it skips)."""
    return any(candidate is thing for candidate in gc.get_objects())


@pytest.mark.usefixtures("interpreter_restored")
def test_prepare_to_serve_freezes_what_exists_and_applies_the_settings() -> None:
    gc.unfreeze()
    made_before = [[n] for n in range(100)]
    assert tracked(made_before)
    settings = Settings(gc_threshold=12_345, switch_interval_ms=2.5)

    prepare_to_serve(settings)

    assert gc.get_freeze_count() >= len(made_before)
    assert not tracked(made_before)
    made_after: list[list[int]] = [[1]]
    assert tracked(made_after)
    assert gc.get_threshold()[0] == 12_345
    assert sys.getswitchinterval() == pytest.approx(0.0025)


def test_the_threshold_keeps_pythons_own_as_its_floor() -> None:
    with pytest.raises(ValueError, match="gc_threshold"):
        Settings(gc_threshold=100)


@pytest.mark.usefixtures("interpreter_restored", "engine")
def test_serve_prepares_the_interpreter_before_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def run(app: Any, **options: Any) -> None:
        seen["threshold"] = gc.get_threshold()[0]
        seen["frozen"] = gc.get_freeze_count()
        seen["port"] = options["port"]

    gc.unfreeze()
    monkeypatch.setenv("BROKERHOOKS_GC_THRESHOLD", "31000")
    monkeypatch.setattr(serve_commands.uvicorn, "run", run)
    result = CliRunner().invoke(cli, ["serve", "--no-worker", "--port", "8765"])

    assert result.exit_code == 0, result.output
    assert seen["port"] == 8765
    assert seen["threshold"] == 31_000
    assert seen["frozen"] > 0


@pytest.mark.usefixtures("interpreter_restored", "engine")
def test_worker_prepares_the_interpreter_before_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, int] = {}

    async def run_until_signalled(worker: Any, grace: float) -> None:
        seen["threshold"] = gc.get_threshold()[0]
        seen["frozen"] = gc.get_freeze_count()

    gc.unfreeze()
    monkeypatch.setenv("BROKERHOOKS_GC_THRESHOLD", "32000")
    monkeypatch.setattr(serve_commands, "run_until_signalled", run_until_signalled)
    result = CliRunner().invoke(cli, ["worker"])

    assert result.exit_code == 0, result.output
    assert seen["threshold"] == 32_000
    assert seen["frozen"] > 0
