"""The SalesTrekker webhook events and what each one is about."""

from __future__ import annotations

from typing import Literal

Subject = Literal["deal", "contact", "note"]

# The 13 events SalesTrekker sends, with the kind of entity `id` names.
EVENT_SUBJECTS: dict[str, Subject] = {
    "contactCreated": "contact",
    "contactUpdated": "contact",
    "dealCreated": "deal",
    "dealUpdated": "deal",
    "dealChangesDueDate": "deal",
    "dealChangesStage": "deal",
    "dealChangesWorkflow": "deal",
    "dealChangesStatus": "deal",
    "dealChangesAttachments": "deal",
    "dealChangesRequiredDocuments": "deal",
    "dealChangesOwner": "deal",
    "noteCreated": "note",
    "noteUpdated": "note",
}

_BY_LOWER = {name.lower(): name for name in EVENT_SUBJECTS}


def canonical_event_name(name: str) -> str | None:
    """The canonical spelling of a known event (any case), or None."""
    return _BY_LOWER.get(name.strip().lower())


def subject_of(event_type: str) -> Subject | None:
    return EVENT_SUBJECTS.get(event_type)
