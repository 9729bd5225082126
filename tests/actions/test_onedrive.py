"""onedrive_folder and onedrive_upload against the Graph simulator.

Uploads from a ``source`` URL fetch it from a small Starlette app served on
loopback, so these tests turn on ``http_allow_private``, except the one
that checks loopback is refused without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from brokerhooks.actions import onedrive_upload
from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.client import SIMPLE_UPLOAD_LIMIT
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.actions.conftest import (
    ContextFactory,
    SimulatedServices,
    action_settings,
)
from tests.connectors.msgraph.conftest import ANN
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio

FOLDER = get_kind("onedrive_folder")
UPLOAD = get_kind("onedrive_upload")
PDF = b"%PDF-1.7 " + bytes(range(256)) * 40


def paths(sim: MicrosoftGraphSimulator, method: str) -> list[str]:
    return [request.path for request in sim.graph_requests(method)]


# Folders.


async def test_makes_each_missing_folder_once(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    params = {"path": "Clients/Citizen/Purchase 12 Wharf St"}

    first = await FOLDER.perform(make_context("onedrive_folder", params))
    again = await FOLDER.perform(make_context("onedrive_folder", params))

    folder = graph_sim.drive_item(ANN, "Clients/Citizen/Purchase 12 Wharf St")
    assert folder is not None
    assert "folder" in folder
    assert first.remote_id == again.remote_id == folder["id"]
    assert first.output["path"] == "Clients/Citizen/Purchase 12 Wharf St"
    assert len(paths(graph_sim, "POST")) == 3


@pytest.mark.parametrize(
    "path", ["Clients/Smith: Jones", "Clients/a|b", "Clients/../x", "a\\b"]
)
async def test_a_name_onedrive_refuses_is_refused_before_any_call(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory, path: str
) -> None:
    with pytest.raises(PermanentError, match="cannot be a OneDrive name"):
        await FOLDER.perform(make_context("onedrive_folder", {"path": path}))

    assert graph_sim.graph_requests() == []


# Uploads of content.


async def test_uploads_content_into_new_folders_and_replaces_on_retry(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    params = {"path": "Clients/Citizen/summary.txt", "content": "Stage: Approved\n"}
    ctx = make_context("onedrive_upload", params)

    first = await UPLOAD.perform(ctx)
    again = await UPLOAD.perform(
        make_context("onedrive_upload", params, event_id=ctx.event_id, unfinished=True)
    )

    content = graph_sim.file_content(ANN, "Clients/Citizen/summary.txt")
    assert content == b"Stage: Approved\n"
    assert first.remote_id == again.remote_id
    assert first.output["upload"] == "simple"
    assert first.output["size"] == len(b"Stage: Approved\n")
    assert [path for path in paths(graph_sim, "PUT") if path.endswith("/content")]


async def test_a_file_over_4_mb_goes_up_in_an_upload_session(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    text = "0123456789abcdef" * (SIMPLE_UPLOAD_LIMIT // 16 + 1000)

    result = await UPLOAD.perform(
        make_context("onedrive_upload", {"path": "big.txt", "content": text})
    )

    assert graph_sim.file_content(ANN, "big.txt") == text.encode()
    assert result.output["upload"] == "session"
    assert [p for p in paths(graph_sim, "POST") if p.endswith("/createUploadSession")]
    chunks = [p for p in paths(graph_sim, "PUT") if p.startswith("/upload/")]
    assert len(chunks) > 1
    assert not [p for p in paths(graph_sim, "PUT") if p.endswith("/content")]


# Uploads from a source URL.


async def serve_file(request: Request) -> Response:
    return Response(PDF, media_type="application/pdf")


async def moved(request: Request) -> Response:
    return RedirectResponse("/files/contract.pdf", status_code=302)


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop", status_code=302)


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return Response("no such file", status_code=code, headers={"Retry-After": "9"})


@pytest.fixture(scope="module")
def source_url() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/files/contract.pdf", serve_file),
            Route("/moved", moved),
            Route("/loop", loop),
            Route("/status/{code}", status),
        ]
    )
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture
def settings_values(files_folder: Path) -> dict[str, Any]:
    return {"files_folder": files_folder, "http_allow_private": True}


@pytest.mark.parametrize("where", ["/files/contract.pdf", "/moved"])
async def test_copies_the_file_at_a_source_url(
    graph_sim: MicrosoftGraphSimulator,
    make_context: ContextFactory,
    source_url: str,
    where: str,
) -> None:
    params = {"path": "Clients/contract.pdf", "source": source_url + where}

    result = await UPLOAD.perform(make_context("onedrive_upload", params))

    assert graph_sim.file_content(ANN, "Clients/contract.pdf") == PDF
    assert result.output["source"] == source_url


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ("/status/404", PermanentError, "answered 404: no such file"),
        ("/status/503", TransientError, "answered 503"),
        ("/loop", PermanentError, "redirected more than 5 times"),
    ],
    ids=["404", "503", "redirect-loop"],
)
async def test_a_source_that_fails_uploads_nothing(
    graph_sim: MicrosoftGraphSimulator,
    make_context: ContextFactory,
    source_url: str,
    where: str,
    error: type[Exception],
    message: str,
) -> None:
    params = {"path": "contract.pdf", "source": source_url + where}

    with pytest.raises(error, match=message):
        await UPLOAD.perform(make_context("onedrive_upload", params))

    assert graph_sim.graph_requests() == []


async def test_a_source_larger_than_the_cap_is_refused(
    graph_sim: MicrosoftGraphSimulator,
    make_context: ContextFactory,
    source_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(onedrive_upload, "MAX_BYTES", len(PDF) - 1)
    params = {"path": "contract.pdf", "source": source_url + "/files/contract.pdf"}

    with pytest.raises(PermanentError, match="larger than"):
        await UPLOAD.perform(make_context("onedrive_upload", params))

    assert graph_sim.graph_requests() == []


async def test_a_loopback_source_is_refused_unless_allowed(
    graph_sim: MicrosoftGraphSimulator,
    services: SimulatedServices,
    make_context: ContextFactory,
    source_url: str,
) -> None:
    strict = dataclasses.replace(services, settings=action_settings())
    params = {"path": "contract.pdf", "source": source_url + "/files/contract.pdf"}

    with pytest.raises(PermanentError, match=r"127\.0\.0\.1, a private, loopback"):
        await UPLOAD.perform(make_context("onedrive_upload", params, services=strict))

    assert graph_sim.graph_requests() == []
