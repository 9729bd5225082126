"""``onedrive_folder``: a folder path in the connection's OneDrive.

Each missing folder on the path is created; those that exist are kept. A
retry finds the folders its earlier attempt made, so the effect happens once.
"""

from __future__ import annotations

from typing import ClassVar

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.support import graph, read_params
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.resources import JSON
from brokerhooks.rules.model import OneDriveFolderParams


class OneDriveFolder:
    name: ClassVar[str] = "onedrive_folder"
    why: ClassVar[str] = (
        "folders are found by path before any is made, and a name taken in the "
        "meantime is read back instead of made again"
    )
    guarantee: ClassVar[str] = "exactly-once"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, OneDriveFolderParams)
        path = drive_path(params.path)
        async with graph(ctx) as client:
            folder = await client.ensure_folder(path)
        return ActionResult(
            remote_id=str(folder["id"]), output=item_output(folder, path)
        )


def item_output(item: JSON, path: str) -> dict[str, object]:
    """What the trace shows of a drive item."""
    return {
        "path": path,
        "web_url": item.get("webUrl"),
        "size": item.get("size"),
    }


_FORBIDDEN = '"*:<>?|\\'


def drive_path(path: str) -> str:
    """``a/b/c`` from a rendered path; PermanentError for a name OneDrive refuses."""
    names = [name for name in path.split("/") if name.strip()]
    if not names:
        raise PermanentError("params.path is empty; name a folder or file")
    for name in names:
        if name in (".", "..") or any(character in name for character in _FORBIDDEN):
            raise PermanentError(
                f"params.path: {name!r} cannot be a OneDrive name; leave out "
                f"the characters {_FORBIDDEN} and do not use . or .. as a name"
            )
    return "/".join(names)
