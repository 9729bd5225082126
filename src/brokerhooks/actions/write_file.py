"""``write_file``: a file in the broker's folder on the brokerhooks server.

The broker's folder is ``<BROKERHOOKS_FILES_FOLDER>/<broker id>``, so no
broker writes where another does. The file holds ``content``, or without
it the event as indented JSON.

No path leaves the broker's folder: absolute paths, drive letters,
backslashes and ``..`` are refused, and the folder the file lands in is
resolved (symbolic links followed) and must lie inside the broker's folder.
A symbolic link at the file's own name is replaced, never followed.

The file is written to a temporary name beside it, flushed to disk, and
renamed over the path, so a reader never sees half a file and a retry just
writes it again. New files are readable by the server's user only (0600):
they hold clients' details.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import ClassVar

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.support import jsonable, read_params
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.rules.model import WriteFileParams

SETTING = "BROKERHOOKS_FILES_FOLDER"
_BROKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class WriteFile:
    name: ClassVar[str] = "write_file"
    why: ClassVar[str] = (
        "the file is written whole under a temporary name and renamed over its "
        "path, so a retry writes the same file again"
    )
    guarantee: ClassVar[str] = "exactly-once"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, WriteFileParams)
        relative = relative_path(params.path)
        root = broker_folder(ctx)
        text = params.content if params.content is not None else event_json(ctx)
        data = text.encode()

        await asyncio.to_thread(write_atomically, root, relative, data)
        shown = relative.as_posix()
        return ActionResult(remote_id=shown, output={"path": shown, "bytes": len(data)})


def broker_folder(ctx: ActionContext) -> Path:
    """``<files folder>/<broker id>``; PermanentError without the setting."""
    folder = getattr(ctx.services.settings, "files_folder", None)
    if not folder:
        raise PermanentError(
            f"write_file needs a folder to write in: set {SETTING} to a folder "
            "the brokerhooks worker may write to"
        )
    if not _BROKER_ID.fullmatch(ctx.broker_id):
        raise PermanentError(f"broker id {ctx.broker_id!r} cannot name a folder")
    return Path(folder) / ctx.broker_id


def relative_path(text: str) -> PurePosixPath:
    """The path as names below the broker's folder; PermanentError if it leaves."""
    if (
        text.startswith("/")
        or re.match(r"[A-Za-z]:", text)
        or "\\" in text
        or "\x00" in text
    ):
        raise PermanentError(
            f"params.path: {text!r} is not a relative path with / between "
            "folders; write e.g. notes/{{ note.id }}.txt"
        )
    names = [name for name in text.split("/") if name not in ("", ".")]
    if ".." in names:
        raise PermanentError(
            f"params.path: {text!r} uses .., which would leave the broker's folder"
        )
    if not names:
        raise PermanentError("params.path is empty; name the file to write")
    return PurePosixPath(*names)


def event_json(ctx: ActionContext) -> str:
    return json.dumps(jsonable(ctx.event), indent=2, ensure_ascii=False) + "\n"


def write_atomically(root: Path, relative: PurePosixPath, data: bytes) -> None:
    """Write ``data`` to ``root/relative`` by a rename; see the module docstring."""
    shown = relative.as_posix()
    try:
        base = _broker_root(root)
        target = base.joinpath(*relative.parts)
        _inside(base, target.parent.resolve(), shown)
        target.parent.mkdir(parents=True, exist_ok=True)
        parent = target.parent.resolve(strict=True)
        _inside(base, parent, shown)
        final = parent / target.name
        if final.is_dir() and not final.is_symlink():
            raise PermanentError(f"params.path: {shown!r} is a folder, not a file")
        _replace(parent, final, data)
    except PermissionError:
        raise PermanentError(
            f"write_file may not write {shown!r}: the worker lacks permission in "
            f"{SETTING}"
        ) from None
    except (NotADirectoryError, FileExistsError):
        raise PermanentError(
            f"params.path: a file stands where {shown!r} needs a folder"
        ) from None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            raise PermanentError(f"params.path: {shown!r} is too long") from None
        raise TransientError(
            f"write_file could not write {shown!r}: {error.strerror or error}"
        ) from None


def _broker_root(root: Path) -> Path:
    if not root.parent.is_dir():
        raise PermanentError(
            f"{SETTING} names a folder that does not exist; create it or change "
            "the setting"
        )
    root.mkdir(exist_ok=True)
    return root.resolve(strict=True)


def _inside(base: Path, folder: Path, shown: str) -> None:
    if folder != base and base not in folder.parents:
        raise PermanentError(
            f"params.path: {shown!r} leads out of the broker's folder through a "
            "symbolic link"
        )


def _replace(parent: Path, final: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(
        dir=parent, prefix=f".{final.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # The rename is durable once the folder's entry is on disk too.
    folder = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
