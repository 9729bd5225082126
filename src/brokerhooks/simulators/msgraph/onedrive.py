"""OneDrive routes: items by id or path, folders, simple and session uploads."""

from __future__ import annotations

from starlette.requests import Request

from brokerhooks.simulators.msgraph import drive as drives
from brokerhooks.simulators.msgraph.common import JSON, Answer, GraphFault
from brokerhooks.simulators.msgraph.fields import (
    collection,
    json_object,
    odata_context,
    require_method,
)
from brokerhooks.simulators.msgraph.state import Tenant, User


def handle_drive(
    tenant: Tenant, request: Request, user: User, address: str, body: bytes
) -> Answer:
    drive = user.drive
    if not address:
        require_method(request, "GET")
        return Answer(200, drive.drive_json())
    where = drives.parse_address(address)
    method = request.method
    if where.tail == "":
        if method == "GET":
            return Answer(200, drive.to_json(drive.locate(where)))
        require_method(request, "DELETE")
        drive.delete(drive.locate(where))
        return Answer(204)
    if where.tail == "/children":
        parent = drive.locate(where)
        if method == "GET":
            return collection(
                request,
                tenant,
                odata_context(request, user, "drive/items"),
                [drive.to_json(child) for child in drive.children(parent)],
            )
        require_method(request, "POST")
        return _create_folder(drive, parent, json_object(body))
    if where.tail == "/content":
        return _content(tenant, request, drive, where, body)
    require_method(request, "POST")
    return _create_upload_session(request, drive, where, body)


def _create_folder(drive: drives.Drive, parent: drives.DriveItem, body: JSON) -> Answer:
    name = body.get("name")
    if not isinstance(name, str):
        raise GraphFault(400, "invalidRequest", "A name is required.")
    if not isinstance(body.get("folder"), dict):
        raise GraphFault(
            400, "invalidRequest", "Only folders can be created with POST children."
        )
    # GUESS: the docs state no default conflict behaviour here; "fail".
    behavior = drives.conflict_behavior(
        body.get("@microsoft.graph.conflictBehavior"), "fail"
    )
    folder = drive.create_folder(parent, name, behavior)
    return Answer(201, drive.to_json(folder))


def _content(
    tenant: Tenant,
    request: Request,
    drive: drives.Drive,
    where: drives.Address,
    body: bytes,
) -> Answer:
    if request.method == "GET":
        item = drive.locate(where)
        if item.is_folder:
            raise GraphFault(400, "invalidRequest", "A folder has no content.")
        # Graph answers 302 to a download URL; the bytes come straight here.
        return Answer(200, item.content)
    require_method(request, "PUT")
    if len(body) > tenant.simple_upload_limit:
        raise GraphFault(
            413,
            "requestEntityTooLarge",
            "The file is too large for a simple upload; use an upload session.",
        )
    behavior = drives.conflict_behavior(
        request.query_params.get("@microsoft.graph.conflictBehavior"), "replace"
    )
    if where.path:
        parent, name = drive.parent_and_name(where)
    else:
        existing = drive.item(where.base)
        if existing.is_folder or existing.parent_id is None:
            raise GraphFault(400, "invalidRequest", "A folder has no content.")
        parent, name = drive.items[existing.parent_id], existing.name
    item, created = drive.write_file(parent, name, body, behavior)
    return Answer(201 if created else 200, drive.to_json(item))


def _create_upload_session(
    request: Request, drive: drives.Drive, where: drives.Address, body: bytes
) -> Answer:
    parameters = json_object(body) if body else {}
    unknown = set(parameters) - {"item", "deferCommit"}
    if unknown:
        raise GraphFault(400, "BadRequest", f"Unknown parameter(s) {sorted(unknown)}.")
    item = parameters.get("item") or {}
    if not isinstance(item, dict):
        raise GraphFault(400, "BadRequest", "'item' must be an object.")
    parent, name = drive.parent_and_name(where)
    # The default conflict behaviour of an upload session is "fail" [doc].
    behavior = drives.conflict_behavior(
        item.get("@microsoft.graph.conflictBehavior"), "fail"
    )
    base = str(request.base_url).rstrip("/")
    _session, answer = drives.start_upload_session(drive, parent, name, behavior, base)
    return Answer(200, answer)


def handle_upload(
    tenant: Tenant, request: Request, session: drives.UploadSession, body: bytes
) -> Answer:
    if request.method == "GET":
        return Answer(200, drives.session_status(session))
    if request.method == "DELETE":
        session.drive.sessions.pop(session.id, None)
        return Answer(204)
    drop = tenant.chunks_to_drop > 0
    if drop:
        tenant.chunks_to_drop -= 1
    return drives.upload_chunk(
        session, request.headers.get("content-range"), body, drop=drop
    )
