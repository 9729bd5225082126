"""A user's OneDrive: folders, files, path addressing and upload sessions.

Items are addressed as Graph does: ``root``, ``items/{id}``, either followed
by ``:/relative/path:`` and then ``/children``, ``/content`` or
``/createUploadSession``. Guesses about OneDrive's behaviour are marked
``GUESS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from brokerhooks.simulators.msgraph.common import (
    JSON,
    Answer,
    GraphFault,
    graph_timestamp,
    new_id,
)

CONFLICT_BEHAVIORS = ("fail", "replace", "rename")
CHUNK_MULTIPLE = 320 * 1024
MAX_CHUNK = 60 * 1024 * 1024
UPLOAD_SESSION_LIFETIME = timedelta(hours=1)  # GUESS: the docs give no figure
_INVALID_NAME = re.compile(r'["*:<>?/\\|]')
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_TAILS = ("", "/children", "/content", "/createUploadSession")


@dataclass
class DriveItem:
    id: str
    name: str
    parent_id: str | None
    is_folder: bool
    content: bytes = b""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: int = 1


@dataclass
class UploadSession:
    id: str
    drive: Drive
    parent_id: str
    name: str
    behavior: str
    expires_at: datetime
    total: int | None
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True, slots=True)
class Address:
    """An item address split up: the base item, a path under it, the rest."""

    base: str  # "root" or an item id
    path: str | None
    tail: str


def parse_address(address: str) -> Address:
    """Split ``root:/a/b:/children`` or ``items/{id}:/x.pdf:/content``."""
    if address.startswith("root"):
        base, rest = "root", address[len("root") :]
    elif address.startswith("items/"):
        rest = address[len("items/") :]
        end = min((i for i in (rest.find(":"), rest.find("/")) if i >= 0), default=-1)
        base, rest = (rest, "") if end < 0 else (rest[:end], rest[end:])
    else:
        raise GraphFault(400, "invalidRequest", f"Invalid request: /{address}")
    path = None
    if rest.startswith(":"):
        close = rest.find(":", 1)
        path, rest = (rest[1:], "") if close < 0 else (rest[1:close], rest[close + 1 :])
        path = path.strip("/")
    if rest not in _TAILS:
        raise GraphFault(400, "invalidRequest", f"Invalid request: /{address}")
    return Address(base=base, path=path, tail=rest)


class Drive:
    """One user's drive."""

    def __init__(self, owner_upn: str, owner_id: str, owner_name: str) -> None:
        self.id = "b!" + new_id()
        self.owner_upn = owner_upn
        self.owner_id = owner_id
        self.owner_name = owner_name
        root = DriveItem(id=new_id("01"), name="root", parent_id=None, is_folder=True)
        self.root_id = root.id
        self.items: dict[str, DriveItem] = {root.id: root}
        self.sessions: dict[str, UploadSession] = {}
        # Told of every change: (item id, created/updated/deleted).
        self.on_change: Callable[[str, str], None] | None = None

    def _changed(self, item_id: str, change_type: str) -> None:
        if self.on_change is not None:
            self.on_change(item_id, change_type)

    # Lookups.

    def item(self, item_id: str) -> DriveItem:
        found = self.items.get(self.root_id if item_id == "root" else item_id)
        if found is None:
            raise _not_found()
        return found

    def children(self, parent: DriveItem) -> list[DriveItem]:
        return [item for item in self.items.values() if item.parent_id == parent.id]

    def child(self, parent: DriveItem, name: str) -> DriveItem | None:
        # OneDrive names are case-insensitive.
        for item in self.children(parent):
            if item.name.casefold() == name.casefold():
                return item
        return None

    def resolve(self, base: DriveItem, path: str | None) -> DriveItem | None:
        item: DriveItem | None = base
        for name in (path or "").split("/"):
            if item is None or not name:
                continue
            item = self.child(item, name)
        return item

    def locate(self, address: Address) -> DriveItem:
        found = self.resolve(self.item(address.base), address.path)
        if found is None:
            raise _not_found()
        return found

    def parent_and_name(self, address: Address) -> tuple[DriveItem, str]:
        """The folder and name a ``:/folder/name:`` address points into."""
        if not address.path:
            raise GraphFault(400, "invalidRequest", "A file name is required.")
        folder_path, _, name = address.path.rpartition("/")
        # GUESS: a missing folder on the way is an error, not created.
        parent = self.resolve(self.item(address.base), folder_path)
        if parent is None or not parent.is_folder:
            raise _not_found()
        return parent, check_name(name)

    def path_of(self, item: DriveItem) -> str:
        names = []
        current: DriveItem | None = item
        while current is not None and current.parent_id is not None:
            names.append(current.name)
            current = self.items.get(current.parent_id)
        return "/".join(reversed(names))

    # Changes.

    def create_folder(self, parent: DriveItem, name: str, behavior: str) -> DriveItem:
        name = self._settle_name(parent, check_name(name), behavior)
        folder = DriveItem(
            id=new_id("01"), name=name, parent_id=parent.id, is_folder=True
        )
        self.items[folder.id] = folder
        self._changed(folder.id, "created")
        return folder

    def write_file(
        self, parent: DriveItem, name: str, content: bytes, behavior: str
    ) -> tuple[DriveItem, bool]:
        """Create or replace a file; True when it was created."""
        existing = self.child(parent, name)
        if existing is not None and not existing.is_folder and behavior == "replace":
            existing.content = content
            existing.modified = datetime.now(UTC)
            existing.version += 1
            self._changed(existing.id, "updated")
            return existing, False
        name = self._settle_name(parent, name, behavior)
        item = DriveItem(
            id=new_id("01"),
            name=name,
            parent_id=parent.id,
            is_folder=False,
            content=content,
        )
        self.items[item.id] = item
        self._changed(item.id, "created")
        return item, True

    def delete(self, item: DriveItem) -> None:
        if item.id == self.root_id:
            raise GraphFault(403, "accessDenied", "The root cannot be deleted.")
        for child in self.children(item):
            self.delete(child)
        del self.items[item.id]
        self._changed(item.id, "deleted")

    def _settle_name(self, parent: DriveItem, name: str, behavior: str) -> str:
        existing = self.child(parent, name)
        if existing is None:
            return name
        if behavior == "fail":
            raise GraphFault(
                409,
                "nameAlreadyExists",
                f"The specified item name already exists. Name: {name}",
            )
        if behavior == "replace":
            # GUESS: replacing a folder gives a new, empty folder (a new id).
            self.delete(existing)
            return name
        # GUESS: OneDrive renames "Report.pdf" to "Report 1.pdf", then " 2"...
        stem, dot, extension = name.rpartition(".")
        if not dot or not stem:
            stem, dot, extension = name, "", ""
        number = 1
        while self.child(parent, f"{stem} {number}{dot}{extension}") is not None:
            number += 1
        return f"{stem} {number}{dot}{extension}"

    # Representation.

    def to_json(self, item: DriveItem) -> JSON:
        path = self.path_of(item)
        value: JSON = {
            "id": item.id,
            "name": item.name,
            "eTag": f'"{{{item.id}}},{item.version}"',
            "cTag": f'"c:{{{item.id}}},{item.version}"',
            "createdDateTime": graph_timestamp(item.created),
            "lastModifiedDateTime": graph_timestamp(item.modified),
            "size": self._size(item),
            # GUESS: a look-alike of a OneDrive for Business address.
            "webUrl": "https://contoso-my.sharepoint.com/personal/"
            + quote(self.owner_upn.replace("@", "_").replace(".", "_"))
            + "/Documents/"
            + quote(path),
            "createdBy": {
                "user": {"id": self.owner_id, "displayName": self.owner_name}
            },
        }
        if item.parent_id is not None:
            parent = self.items[item.parent_id]
            parent_path = self.path_of(parent)
            value["parentReference"] = {
                "driveId": self.id,
                "driveType": "business",
                "id": parent.id,
                "path": "/drive/root:" + (f"/{parent_path}" if parent_path else ""),
            }
        else:
            value["root"] = {}
        if item.is_folder:
            value["folder"] = {"childCount": len(self.children(item))}
        else:
            value["file"] = {"mimeType": _mime_type(item.name)}
        return value

    def _size(self, item: DriveItem) -> int:
        if not item.is_folder:
            return len(item.content)
        return sum(self._size(child) for child in self.children(item))

    def drive_json(self) -> JSON:
        return {
            "id": self.id,
            "driveType": "business",
            "name": "OneDrive",
            "owner": {"user": {"id": self.owner_id, "displayName": self.owner_name}},
        }


def check_name(name: str) -> str:
    if not name or _INVALID_NAME.search(name) or name.endswith((" ", ".")):
        raise GraphFault(
            400, "invalidRequest", f"The name {name!r} contains invalid characters."
        )
    return name


def conflict_behavior(value: object, default: str) -> str:
    if value is None:
        return default
    if value not in CONFLICT_BEHAVIORS:
        raise GraphFault(
            400,
            "invalidRequest",
            f"Invalid value for @microsoft.graph.conflictBehavior: {value!r}",
        )
    return str(value)


# Upload sessions.


def start_upload_session(
    drive: Drive, parent: DriveItem, name: str, behavior: str, upload_base: str
) -> tuple[UploadSession, JSON]:
    session = UploadSession(
        id=new_id(),
        drive=drive,
        parent_id=parent.id,
        name=name,
        behavior=behavior,
        expires_at=datetime.now(UTC) + UPLOAD_SESSION_LIFETIME,
        total=None,
    )
    drive.sessions[session.id] = session
    return session, {
        "@odata.context": "https://graph.microsoft.com/v1.0/"
        "$metadata#microsoft.graph.uploadSession",
        "uploadUrl": f"{upload_base}/upload/{session.id}",
        "expirationDateTime": graph_timestamp(session.expires_at),
        "nextExpectedRanges": ["0-"],
    }


def session_status(session: UploadSession) -> JSON:
    return {
        "expirationDateTime": graph_timestamp(session.expires_at),
        "nextExpectedRanges": [f"{len(session.data)}-"],
    }


def upload_chunk(
    session: UploadSession, content_range: str | None, chunk: bytes, *, drop: bool
) -> Answer:
    """Take one ``PUT {uploadUrl}``; ``drop`` acknowledges but loses the chunk."""
    match = _CONTENT_RANGE.match(content_range or "")
    if match is None:
        raise GraphFault(
            400, "invalidRequest", "Content-Range must be 'bytes START-END/TOTAL'."
        )
    start, end, total = (int(part) for part in match.groups())
    if end < start or end - start + 1 != len(chunk) or end >= total:
        raise GraphFault(
            400, "invalidRange", "Content-Range does not match the body's length."
        )
    if session.total is not None and session.total != total:
        raise GraphFault(400, "invalidRange", "The total size changed.")
    if len(chunk) > MAX_CHUNK:
        raise GraphFault(413, "requestEntityTooLarge", "A fragment is over 60 MiB.")
    is_last = end + 1 == total
    if not is_last and len(chunk) % CHUNK_MULTIPLE:
        raise GraphFault(
            400,
            "invalidRequest",
            "A fragment that is not the last must be a multiple of 320 KiB.",
        )
    if start != len(session.data):
        # GUESS: a gap is refused like an overlap, with 416.
        raise GraphFault(
            416,
            "invalidRange",
            "The uploaded fragment overlaps or skips data; "
            f"expected {len(session.data)}-.",
        )
    session.total = total
    if drop:
        return Answer(202, session_status(session))
    session.data.extend(chunk)
    if not is_last:
        return Answer(202, session_status(session))

    drive = session.drive
    parent = drive.items.get(session.parent_id)
    if parent is None:
        raise _not_found()
    item, created = drive.write_file(
        parent, session.name, bytes(session.data), session.behavior
    )
    del drive.sessions[session.id]
    return Answer(201 if created else 200, drive.to_json(item))


def _not_found() -> GraphFault:
    return GraphFault(404, "itemNotFound", "The resource could not be found.")


def _mime_type(name: str) -> str:
    extension = name.rpartition(".")[2].lower()
    return {
        "pdf": "application/pdf",
        "txt": "text/plain",
        "html": "text/html",
        "png": "image/png",
        "jpg": "image/jpeg",
        "docx": "application/vnd.openxmlformats-officedocument."
        "wordprocessingml.document",
    }.get(extension, "application/octet-stream")
