"""Every JSON body GraphClient sends validates against Graph's OpenAPI subset.

The subset (``graph-openapi-subset.strict.yaml``, kept in shared/reference
beside the repository) is derived from Microsoft's metadata: inheritance
flattened, unknown properties rejected, enums case-insensitive. A recording
transport in front of the simulator captures each request the client
makes; each JSON body is checked against the request schema of the
operation its method and path name, with ``$ref`` resolved within the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from brokerhooks.connectors.msgraph.client import CHUNK_MULTIPLE, GraphClient
from brokerhooks.connectors.msgraph.resources import (
    EventFields,
    LinkedResource,
    MailMessage,
    Recipient,
    TaskFields,
)
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.connectors.msgraph.conftest import ANN

SPEC_NAME = "graph-openapi-subset.strict.yaml"
REPOSITORY = Path(__file__).resolve().parents[3]


def find_spec() -> Path | None:
    candidates = [
        os.environ.get("BROKERHOOKS_GRAPH_OPENAPI"),
        REPOSITORY.parent / "shared" / "reference" / SPEC_NAME,
        REPOSITORY / "shared" / "reference" / SPEC_NAME,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


SPEC = find_spec()
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        SPEC is None,
        reason=f"{SPEC_NAME} not found in shared/reference beside the repository; "
        "set BROKERHOOKS_GRAPH_OPENAPI to its path to run the Graph contract test",
    ),
]

SPEC_URI = "urn:brokerhooks:graph-openapi-subset"
METHODS = ("get", "put", "post", "patch", "delete")
# Request bodies of operations the subset does not cover, from the API
# reference (event-cancel: POST /users/{id}/events/{id}/cancel; user-post-
# messages: POST /users/{id}/messages takes a message resource, the same
# schema as sendMail's message).
DOCUMENTED_ELSEWHERE: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/users/{user-id}/events/{event-id}/cancel"): {
        "type": "object",
        "properties": {"comment": {"type": "string"}, "Comment": {"type": "string"}},
        "additionalProperties": False,
    },
    ("post", "/users/{user-id}/messages"): {
        "$ref": SPEC_URI + "#/components/schemas/microsoft.graph.message"
    },
}


def without_nullable(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema's ``null`` type."""
    if isinstance(schema, list):
        return [without_nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    value = {key: without_nullable(item) for key, item in schema.items()}
    if value.pop("nullable", False) is True:
        kind = value.get("type")
        if isinstance(kind, str):
            value["type"] = [kind, "null"]
        elif isinstance(kind, list):
            value["type"] = [*kind, "null"]
        else:
            value = {"anyOf": [value, {"type": "null"}]}
    return value


def path_pattern(template: str) -> re.Pattern[str]:
    """A regex for an OpenAPI path; ``{driveItem-id}`` may hold ``root:/a/b:``."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(
        ("(.+)" if part == "{driveItem-id}" else "([^/]+)")
        if part.startswith("{")
        else re.escape(part)
        for part in parts
    )
    return re.compile(regex)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    schema: dict[str, Any]


class Contract:
    """The request schemas of the subset, found by method and path."""

    def __init__(self, document: dict[str, Any]) -> None:
        document = without_nullable(document)
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.operations = list(self._operations(document))

    def _operations(self, document: dict[str, Any]) -> Iterator[Operation]:
        for template, item in document["paths"].items():
            for method in METHODS:
                body = item.get(method, {}).get("requestBody", {})
                if "application/json" not in body.get("content", {}):
                    continue
                pointer = "/".join(
                    [
                        "#/paths",
                        template.replace("~", "~0").replace("/", "~1"),
                        method,
                        "requestBody/content/application~1json/schema",
                    ]
                )
                yield Operation(
                    method,
                    template,
                    path_pattern(template),
                    {"$ref": SPEC_URI + pointer},
                )
        for (method, template), schema in DOCUMENTED_ELSEWHERE.items():
            yield Operation(method, template, path_pattern(template), schema)

    def operation(self, method: str, path: str) -> Operation | None:
        # /me is the signed-in user's /users/{id} [doc]; the subset lists
        # only some /me paths.
        candidates = [path]
        if path.startswith("/me/"):
            candidates.append("/users/me/" + path[len("/me/") :])
        for candidate in candidates:
            for operation in self.operations:
                if operation.method == method.lower() and operation.pattern.fullmatch(
                    candidate
                ):
                    return operation
        return None

    def errors(self, operation: Operation, body: Any) -> list[str]:
        validator = jsonschema.Draft202012Validator(
            operation.schema,
            registry=self.registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in validator.iter_errors(body)
        ]


@pytest.fixture(scope="module")
def contract() -> Contract:
    assert SPEC is not None
    return Contract(yaml.safe_load(SPEC.read_text()))


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    content_type: str
    body: bytes


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests on to the simulator, keeping a copy of each."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[Sent] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        path = request.url.path.removeprefix("/v1.0")
        content_type = request.headers.get("content-type", "")
        self.sent.append(Sent(request.method, path, content_type, body))
        return await self.inner.handle_async_request(request)


class Tokens:
    def __init__(self, sim: MicrosoftGraphSimulator, upn: str | None) -> None:
        self.sim, self.upn = sim, upn

    async def __call__(self, *, force_refresh: bool = False) -> Secret:
        return Secret(self.sim.issue_access_token(self.upn))


async def every_operation(client: GraphClient) -> None:
    """Each GraphClient operation once, with every optional field set."""
    when = datetime(2026, 9, 10, 10, 0, tzinfo=UTC)
    task_list = await client.find_or_create_task_list("Deals")
    task = await client.create_task(
        task_list["id"],
        TaskFields(
            title="Call the lender",
            body="<p>Smith</p>",
            body_type="html",
            due=when,
            reminder=when - timedelta(hours=1),
            importance="high",
            status="inProgress",
            categories=["Settlement"],
            linked_resource=LinkedResource(
                web_url="https://acme.salestrekker.com/deal/1",
                display_name="Smith",
                external_id="deal-1",
            ),
        ),
    )
    await client.update_task(
        task_list["id"], task["id"], TaskFields(status="completed", title="Called")
    )
    await client.get_task(task_list["id"], task["id"])
    await client.send_mail(
        MailMessage(
            to=["client@example.com", Recipient("pat@example.com", "Pat")],
            cc=["broker@example.com"],
            subject="Approved",
            html_body="<p>Approved</p>",
            headers={"x-brokerhooks-action": "run-1/2"},
        ),
        save_to_sent_items=False,
    )
    draft = await client.create_draft(
        MailMessage(
            to=["client@example.com"],
            subject="Approved",
            html_body="<p>Approved</p>",
            headers={"x-brokerhooks-key": "run-1/2"},
        )
    )
    assert await client.is_draft(draft) is True
    await client.send_draft(draft)
    assert await client.is_draft(draft) is False
    unsent = await client.create_draft(
        MailMessage(to=["client@example.com"], subject="Never", html_body="<p>-</p>")
    )
    await client.delete_draft(unsent)
    assert await client.is_draft(unsent) is None
    await client.delete_draft(unsent)  # already gone: no error
    event = await client.create_event(
        EventFields(
            subject="Settlement",
            html_body="<p>Day</p>",
            start=when,
            end=when + timedelta(hours=1),
            location="Office",
            attendees=["client@example.com"],
            reminder_minutes=30,
        ),
        transaction_id="run-1/3",
    )
    await client.update_event(event["id"], EventFields(subject="Moved", start=when))
    await client.cancel_event(event["id"], comment="Moved")
    await client.delete_event(event["id"])
    await client.ensure_folder("Deals/Smith - Loan 1")
    await client.create_folder("Deals", "Smith - Loan 1", conflict_behavior="rename")
    await client.upload_file("Deals", "note.txt", b"hello")
    await client.upload_file("Deals", "big.pdf", b"\x00" * (4 * 1024 * 1024 + 1))
    await client.get_item_by_path("Deals/big.pdf")


@pytest.mark.parametrize("app_only", [False, True], ids=["delegated", "app-only"])
async def test_every_request_body_matches_the_subset(
    sim: MicrosoftGraphSimulator, contract: Contract, app_only: bool
) -> None:
    recording = RecordingTransport(sim.transport())
    async with GraphClient(
        token_provider=Tokens(sim, None if app_only else ANN),
        mailbox=ANN,
        app_only=app_only,
        graph_url="https://graph.test",
        transport=recording,
        chunk_size=4 * CHUNK_MULTIPLE,
    ) as client:
        await every_operation(client)

    checked: set[str] = set()
    problems: list[str] = []
    for sent in recording.sent:
        if not sent.body or sent.path.startswith("/upload/"):
            continue
        operation = contract.operation(sent.method, sent.path)
        if sent.content_type != "application/json":
            assert sent.content_type == "application/octet-stream", sent
            continue
        if operation is None:
            problems.append(f"{sent.method} {sent.path}: no operation in the subset")
            continue
        checked.add(f"{operation.method.upper()} {operation.template}")
        for error in contract.errors(operation, json.loads(sent.body)):
            problems.append(f"{sent.method} {sent.path}: {error}")

    assert problems == []
    prefix = "/users/{user-id}" if app_only else "/me"
    assert {
        f"POST {prefix}/todo/lists",
        f"POST {prefix}/todo/lists/{{todoTaskList-id}}/tasks",
        "PATCH /users/{user-id}/todo/lists/{todoTaskList-id}/tasks/{todoTask-id}",
        f"POST {prefix}/sendMail",
        "POST /users/{user-id}/messages",
        f"POST {prefix}/events",
        "PATCH /users/{user-id}/events/{event-id}",
        "POST /users/{user-id}/events/{event-id}/cancel",
        "POST /drives/{drive-id}/items/{driveItem-id}/children",
        "POST /drives/{drive-id}/items/{driveItem-id}/createUploadSession",
    } <= checked


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        (
            "POST",
            "/me/todo/lists/L1/tasks",
            {"title": "x", "dueDate": {"dateTime": "2026-09-04T17:00:00"}},
            "dueDate",
        ),
        ("POST", "/me/todo/lists/L1/tasks", {"importance": "urgent"}, "urgent"),
        (
            "POST",
            "/users/u/sendMail",
            {"message": {"toRecipients": [{"emailAddress": {"adress": "a@b"}}]}},
            "adress",
        ),
        ("POST", "/me/sendMail", {"message": {}, "saveToSentItems": "no"}, "'no'"),
        (
            "POST",
            "/drives/d/items/root:/a/b.pdf:/createUploadSession",
            {"item": {"@microsoft.graph.conflictBehavior": "overwrite"}},
            "overwrite",
        ),
    ],
    ids=["typo-property", "bad-enum", "nested-typo", "string-boolean", "bad-conflict"],
)
def test_the_contract_catches_mistakes(
    contract: Contract, method: str, path: str, body: dict[str, Any], needle: str
) -> None:
    """The check can fail: bodies with typical mistakes are refused."""
    operation = contract.operation(method, path)
    assert operation is not None

    errors = contract.errors(operation, body)

    assert errors
    assert any(needle in error for error in errors), errors


def test_nullable_becomes_a_null_type() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "nullable": True}},
    }

    assert without_nullable(schema)["properties"]["a"] == {"type": ["string", "null"]}
