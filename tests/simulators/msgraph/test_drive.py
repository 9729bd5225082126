"""The simulated OneDrive: path addressing, conflicts, uploads."""

from __future__ import annotations

import httpx
import pytest

from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from brokerhooks.simulators.msgraph.drive import parse_address
from tests.simulators.msgraph.conftest import ANN, bearer

pytestmark = pytest.mark.anyio

CHUNK = 320 * 1024


@pytest.fixture
def ann(sim: MicrosoftGraphSimulator) -> dict[str, str]:
    return bearer(sim.issue_access_token(ANN))


async def drive_url(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    drive = (await http.get("/v1.0/me/drive", headers=headers)).json()
    return f"/v1.0/drives/{drive['id']}"


async def make_folder(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    name: str,
    behavior: str | None = None,
) -> httpx.Response:
    body: dict[str, object] = {"name": name, "folder": {}}
    if behavior:
        body["@microsoft.graph.conflictBehavior"] = behavior
    drive = await drive_url(http, headers)
    return await http.post(f"{drive}/items/root/children", headers=headers, json=body)


@pytest.mark.parametrize(
    ("address", "base", "path", "tail"),
    [
        ("root", "root", None, ""),
        ("root/children", "root", None, "/children"),
        ("root:/Deals/Smith:", "root", "Deals/Smith", ""),
        ("root:/Deals/Smith:/children", "root", "Deals/Smith", "/children"),
        ("items/01ABC:/a.pdf:/content", "01ABC", "a.pdf", "/content"),
        (
            "items/root:/a.pdf:/createUploadSession",
            "root",
            "a.pdf",
            "/createUploadSession",
        ),
        ("items/01ABC", "01ABC", None, ""),
    ],
)
def test_item_addresses_parse(
    address: str, base: str, path: str | None, tail: str
) -> None:
    parsed = parse_address(address)

    assert (parsed.base, parsed.path, parsed.tail) == (base, path, tail)


@pytest.mark.parametrize(
    ("behavior", "status", "names"),
    [
        ("fail", 409, ["Deals"]),
        ("rename", 201, ["Deals", "Deals 1"]),
        ("replace", 201, ["Deals"]),
    ],
)
async def test_folder_conflict_behaviour(
    http: httpx.AsyncClient,
    ann: dict[str, str],
    behavior: str,
    status: int,
    names: list[str],
) -> None:
    first = await make_folder(http, ann, "Deals")

    second = await make_folder(http, ann, "Deals", behavior)

    assert second.status_code == status
    drive = await drive_url(http, ann)
    children = (await http.get(f"{drive}/items/root/children", headers=ann)).json()
    assert sorted(item["name"] for item in children["value"]) == names
    if behavior == "fail":
        assert second.json()["error"]["code"] == "nameAlreadyExists"
    if behavior == "replace":
        assert second.json()["id"] != first.json()["id"]


async def test_simple_upload_creates_then_replaces(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    await make_folder(http, ann, "Deals")
    drive = await drive_url(http, ann)
    url = f"{drive}/items/root:/Deals/a.txt:/content"

    created = await http.put(url, headers=ann, content=b"one")
    replaced = await http.put(url, headers=ann, content=b"two")
    missing_folder = await http.put(
        f"{drive}/items/root:/Nope/a.txt:/content", headers=ann, content=b"x"
    )

    assert (created.status_code, replaced.status_code) == (201, 200)
    assert replaced.json()["id"] == created.json()["id"]
    assert replaced.json()["parentReference"]["path"] == "/drive/root:/Deals"
    assert sim.file_content(ANN, "Deals/a.txt") == b"two"
    assert missing_folder.status_code == 404


async def test_simple_upload_refuses_more_than_the_limit(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    sim.simple_upload_limit = 10
    drive = await drive_url(http, ann)

    response = await http.put(
        f"{drive}/items/root:/big.bin:/content", headers=ann, content=b"x" * 11
    )

    assert response.status_code == 413


async def start_session(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    drive = await drive_url(http, headers)
    response = await http.post(
        f"{drive}/items/root:/big.bin:/createUploadSession",
        headers=headers,
        json={"item": {"@microsoft.graph.conflictBehavior": "fail"}},
    )
    assert response.status_code == 200
    assert response.json()["nextExpectedRanges"] == ["0-"]
    url: str = response.json()["uploadUrl"]
    return url


def content_range(start: int, length: int, total: int) -> dict[str, str]:
    return {"Content-Range": f"bytes {start}-{start + length - 1}/{total}"}


async def test_upload_session_takes_chunks_in_order(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    data = bytes(range(256)) * (CHUNK * 2 // 256) + b"tail"
    url = await start_session(http, ann)

    first = await http.put(
        url, content=data[:CHUNK], headers=content_range(0, CHUNK, len(data))
    )
    repeated = await http.put(
        url, content=data[:CHUNK], headers=content_range(0, CHUNK, len(data))
    )
    rest = await http.put(
        url,
        content=data[CHUNK:],
        headers=content_range(CHUNK, len(data) - CHUNK, len(data)),
    )

    assert first.status_code == 202
    assert first.json()["nextExpectedRanges"] == [f"{CHUNK}-"]
    assert repeated.status_code == 416
    assert rest.status_code == 201
    assert rest.json()["size"] == len(data)
    assert sim.file_content(ANN, "big.bin") == data


@pytest.mark.parametrize(
    ("length", "headers", "status"),
    [
        (CHUNK - 1, {}, 400),
        (CHUNK, {"Authorization": "Bearer anything"}, 401),
    ],
    ids=["not-a-multiple-of-320KiB", "authorization-header"],
)
async def test_upload_session_refuses_bad_chunks(
    http: httpx.AsyncClient,
    ann: dict[str, str],
    length: int,
    headers: dict[str, str],
    status: int,
) -> None:
    url = await start_session(http, ann)

    response = await http.put(
        url,
        content=b"x" * length,
        headers={**content_range(0, length, 10 * CHUNK), **headers},
    )

    assert response.status_code == status


async def test_a_dropped_chunk_is_asked_for_again(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    url = await start_session(http, ann)
    sim.drop_upload_chunks(1)

    response = await http.put(
        url, content=b"x" * CHUNK, headers=content_range(0, CHUNK, 2 * CHUNK)
    )

    assert response.status_code == 202
    assert response.json()["nextExpectedRanges"] == ["0-"]


async def test_upload_session_fails_at_the_end_on_a_name_conflict(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    drive = await drive_url(http, ann)
    await http.put(f"{drive}/items/root:/big.bin:/content", headers=ann, content=b"a")
    url = await start_session(http, ann)

    response = await http.put(url, content=b"b", headers=content_range(0, 1, 1))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "nameAlreadyExists"
    assert sim.file_content(ANN, "big.bin") == b"a"
