"""``onedrive_upload``: a file at a path in the connection's OneDrive.

The file's bytes are ``content`` (as UTF-8), or what a GET of ``source``
answers. The folders on the way are made if missing, and the file replaces
whatever is at the path, so a retry writes the same file again. Files up to
4 MB go up in one request, larger ones in an upload session (the Graph
client decides).

``source`` is fetched like ``http_request`` sends: public addresses only,
unless ``http_allow_private`` is on; redirects are followed by hand, up to
five, each checked the same way; the file may be at most ``MAX_BYTES``.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urljoin

import httpx

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.onedrive_folder import drive_path, item_output
from brokerhooks.actions.outbound import (
    check_destination,
    check_peer,
    origin,
    refuse_failure,
    timeout,
)
from brokerhooks.actions.support import graph, read_params
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.client import SIMPLE_UPLOAD_LIMIT
from brokerhooks.rules.model import OneDriveUploadParams

MAX_BYTES = 250 * 1024 * 1024
MAX_REDIRECTS = 5


class OneDriveUpload:
    name: ClassVar[str] = "onedrive_upload"
    why: ClassVar[str] = (
        "the file replaces whatever is at its path, so a retry writes the same "
        "file again and never a second one"
    )
    guarantee: ClassVar[str] = "exactly-once"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, OneDriveUploadParams)
        path = drive_path(params.path)
        folder, _, name = path.rpartition("/")
        if params.source is not None:
            data = await download(ctx, params.source)
        else:
            data = (params.content or "").encode()

        async with graph(ctx) as client:
            if folder:
                await client.ensure_folder(folder)
            item = await client.upload_file(
                folder, name, data, conflict_behavior="replace"
            )
        return ActionResult(
            remote_id=str(item["id"]),
            output={
                **item_output(item, path),
                "source": origin(params.source) if params.source else None,
                "upload": "session" if len(data) > SIMPLE_UPLOAD_LIMIT else "simple",
            },
        )


async def download(ctx: ActionContext, url: str) -> bytes:
    """The body of a GET of ``url``, following redirects by hand."""
    for _ in range(MAX_REDIRECTS + 1):
        data, location = await _get(ctx, url)
        if location is None:
            return data
        url = location
    raise PermanentError(
        f"params.source: {origin(url)} redirected more than {MAX_REDIRECTS} times; "
        "give the URL the file is at"
    )


async def _get(ctx: ActionContext, url: str) -> tuple[bytes, str | None]:
    """The body, or where the answer redirects to."""
    settings = ctx.services.settings
    await check_destination(url, settings)
    try:
        async with ctx.services.http.stream(
            "GET", url, timeout=timeout(settings), follow_redirects=False
        ) as response:
            check_peer(url, response, settings)
            location = response.headers.get("location")
            if response.is_redirect and location:
                return b"", urljoin(url, location)
            await refuse_failure(url, response, "GET of params.source")
            return await _capped_body(url, response), None
    except httpx.TimeoutException:
        raise TransientError(
            f"GET of params.source at {origin(url)} got no answer in time"
        ) from None
    except httpx.TransportError as error:
        raise TransientError(
            f"GET of params.source at {origin(url)} failed: {type(error).__name__}"
        ) from None


async def _capped_body(url: str, response: httpx.Response) -> bytes:
    too_large = PermanentError(
        f"params.source: the file at {origin(url)} is larger than "
        f"{MAX_BYTES // (1024 * 1024)} MB, the most onedrive_upload copies"
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise too_large
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > MAX_BYTES:
            raise too_large
    return bytes(data)
