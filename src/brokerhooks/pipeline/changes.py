"""What changed between two snapshots of the same entity.

A webhook says only that something happened; the change is found by
comparing the snapshot fetched now with the previous one. Each change has a
stable name (used by rule conditions as ``changes.<name>``) and a ``from``
and ``to`` value. Stages and workflows carry both id and name, so a rule can
say "moved into the stage named Approved" and still survive a rename.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Snapshot = Mapping[str, Any]
Extractor = Callable[[Snapshot], Any]


def _path(*keys: str) -> Extractor:
    def extract(snapshot: Snapshot) -> Any:
        value: Any = snapshot
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    return extract


def _named(id_key: str, object_key: str) -> Extractor:
    """``{"id", "name"}`` from the id field and its resolved object."""

    def extract(snapshot: Snapshot) -> Any:
        identifier = snapshot.get(id_key)
        if identifier is None:
            return None
        resolved = snapshot.get(object_key) or {}
        return {"id": identifier, "name": resolved.get("name")}

    return extract


def _labels(snapshot: Snapshot) -> Any:
    names = {
        label.get("id"): label.get("name")
        for label in snapshot.get("labels") or []
        if isinstance(label, Mapping)
    }
    return [
        {"id": label_id, "name": names.get(label_id)}
        for label_id in sorted(snapshot.get("idLabels") or [])
    ]


def _sorted(key: str) -> Extractor:
    return lambda snapshot: sorted(snapshot.get(key) or [])


def _phone(code_key: str, number_key: str) -> Extractor:
    def extract(snapshot: Snapshot) -> Any:
        contact = _path("person", "contact")(snapshot) or {}
        number = contact.get(number_key)
        if not number:
            return None
        code = contact.get(code_key)
        return f"{code} {number}" if code else number

    return extract


FIELDS: dict[str, dict[str, Extractor]] = {
    "deal": {
        "stage": _named("idStage", "stage"),
        "workflow": _named("idWorkflow", "workflow"),
        "won": _path("isWon"),
        "lost": _path("isLost"),
        "settled": _path("isSettled"),
        "in_progress": _path("isInProgress"),
        "active": _path("isActive"),
        "owner": _path("idOwner"),
        "due_date": _path("dueDate"),
        "amount": _path("values", "onceOff"),
        "labels": _labels,
        "clients": _sorted("idClients"),
        "name": _path("name"),
        "description": _path("description"),
    },
    "contact": {
        "first_name": _path("person", "information", "firstName"),
        "family_name": _path("person", "information", "familyName"),
        "preferred_name": _path("person", "information", "preferredName"),
        "email": _path("person", "contact", "email"),
        "secondary_email": _path("person", "contact", "secondaryEmail"),
        "phone": _phone("primaryCode", "primary"),
        "home_phone": _phone("homeCode", "home"),
        "owner": _path("idOwner"),
        "active": _path("isActive"),
        "labels": _sorted("idLabels"),
    },
    "note": {
        "content": _path("content"),
        "active": _path("isActive"),
        "owner": _path("idOwner"),
    },
}


def compute_changes(
    subject: str, previous: Snapshot | None, current: Snapshot
) -> dict[str, dict[str, Any]]:
    """The changes from ``previous`` to ``current``; none for a first snapshot."""
    if previous is None:
        return {}
    changes: dict[str, dict[str, Any]] = {}
    for name, extract in FIELDS[subject].items():
        before, after = extract(previous), extract(current)
        if _identity(before) != _identity(after):
            changes[name] = {"from": before, "to": after}
    return changes


def _identity(value: Any) -> Any:
    """Compare named things by id: a renamed stage is not a stage change."""
    if isinstance(value, Mapping) and "id" in value:
        return value["id"]
    if isinstance(value, list):
        return [_identity(item) for item in value]
    return value
