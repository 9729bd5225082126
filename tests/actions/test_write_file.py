"""write_file: files in the broker's folder, and nowhere else."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError
from tests.actions.conftest import (
    BROKER_ID,
    ContextFactory,
    SimulatedServices,
    action_settings,
)

pytestmark = pytest.mark.anyio

WRITE = get_kind("write_file")


@pytest.fixture
def broker_folder(files_folder: Path) -> Path:
    return files_folder / BROKER_ID


def everything_in(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


async def test_writes_the_content_in_the_brokers_folder(
    make_context: ContextFactory, broker_folder: Path
) -> None:
    params = {"path": "notes/deal-1/note-9.txt", "content": "Client rang."}

    result = await WRITE.perform(make_context("write_file", params))

    written = broker_folder / "notes" / "deal-1" / "note-9.txt"
    assert written.read_text() == "Client rang."
    assert written.stat().st_mode & 0o777 == 0o600
    assert result.remote_id == "notes/deal-1/note-9.txt"
    assert result.output == {"path": "notes/deal-1/note-9.txt", "bytes": 12}


async def test_without_content_the_file_holds_the_event(
    make_context: ContextFactory, broker_folder: Path
) -> None:
    ctx = make_context("write_file", {"path": "events/latest.json"})

    await WRITE.perform(ctx)

    text = (broker_folder / "events" / "latest.json").read_text()
    assert json.loads(text) == dict(ctx.event)
    assert text.startswith('{\n  "id"')


async def test_a_retry_rewrites_the_file_and_leaves_nothing_else(
    make_context: ContextFactory, broker_folder: Path
) -> None:
    ctx = make_context("write_file", {"path": "a.txt", "content": "one"})
    await WRITE.perform(ctx)

    await WRITE.perform(dataclasses.replace(ctx, unfinished=True))

    assert everything_in(broker_folder) == ["a.txt"]
    assert (broker_folder / "a.txt").read_text() == "one"


@pytest.mark.parametrize(
    "path",
    ["../x.txt", "notes/../../x.txt", "/etc/passwd", "C:/x.txt", "notes\\x.txt", ".."],
)
async def test_a_path_that_leaves_the_folder_is_refused(
    make_context: ContextFactory, files_folder: Path, path: str
) -> None:
    with pytest.raises(PermanentError, match=r"params\.path"):
        await WRITE.perform(make_context("write_file", {"path": path, "content": "x"}))

    assert everything_in(files_folder.parent) == ["files"]


async def test_a_symbolic_link_out_of_the_folder_is_not_followed(
    make_context: ContextFactory, broker_folder: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    broker_folder.mkdir()
    (broker_folder / "shared").symlink_to(outside)

    with pytest.raises(PermanentError, match="symbolic link"):
        await WRITE.perform(
            make_context("write_file", {"path": "shared/x.txt", "content": "x"})
        )

    assert list(outside.iterdir()) == []


async def test_a_symbolic_link_at_the_files_name_is_replaced(
    make_context: ContextFactory, broker_folder: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    broker_folder.mkdir()
    (broker_folder / "x.txt").symlink_to(victim)

    await WRITE.perform(make_context("write_file", {"path": "x.txt", "content": "new"}))

    assert victim.read_text() == "keep me"
    assert not (broker_folder / "x.txt").is_symlink()
    assert (broker_folder / "x.txt").read_text() == "new"


async def test_a_folder_at_the_path_is_refused(
    make_context: ContextFactory, broker_folder: Path
) -> None:
    (broker_folder / "notes").mkdir(parents=True)

    with pytest.raises(PermanentError, match="is a folder"):
        await WRITE.perform(
            make_context("write_file", {"path": "notes", "content": "x"})
        )


async def test_without_a_files_folder_the_setting_is_named(
    services: SimulatedServices, make_context: ContextFactory
) -> None:
    unset = dataclasses.replace(services, settings=action_settings())

    with pytest.raises(PermanentError, match="set BROKERHOOKS_FILES_FOLDER"):
        await WRITE.perform(
            make_context("write_file", {"path": "a.txt"}, services=unset)
        )
