"""Every action kind by name, and what each guarantees.

``get_kind`` is how the worker finds the kind of a step. ``guarantees`` and
``guarantee_table`` give each kind's promise about repeats; the table at
the end of docs/rules.md is ``guarantee_table()``, and a test keeps them
the same.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from brokerhooks.actions.base import ActionKind
from brokerhooks.actions.calendar_event import CalendarEvent
from brokerhooks.actions.http_request import HttpRequest
from brokerhooks.actions.onedrive_folder import OneDriveFolder
from brokerhooks.actions.onedrive_upload import OneDriveUpload
from brokerhooks.actions.salestrekker_note import SalesTrekkerNote
from brokerhooks.actions.send_mail import SendMail
from brokerhooks.actions.todo_task import TodoTask
from brokerhooks.actions.write_file import WriteFile
from brokerhooks.connectors.errors import PermanentError


class ExplainedKind(ActionKind, Protocol):
    why: ClassVar[str]
    """Why the guarantee holds (or why it is no stronger), in a sentence."""


_ALL: tuple[ExplainedKind, ...] = (
    TodoTask(),
    SendMail(),
    CalendarEvent(),
    OneDriveFolder(),
    OneDriveUpload(),
    SalesTrekkerNote(),
    HttpRequest(),
    WriteFile(),
)

KINDS: dict[str, ActionKind] = {kind.name: kind for kind in _ALL}


class UnknownActionKind(PermanentError):
    """A step names a kind this version of brokerhooks does not have."""


def get_kind(name: str) -> ActionKind:
    """The kind called ``name``; UnknownActionKind (permanent) if none is."""
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownActionKind(
            f"{name!r} is not an action kind this brokerhooks knows; the kinds "
            f"are {', '.join(KINDS)}. Fix the rule, or upgrade brokerhooks if "
            "the rule was written for a newer version"
        ) from None


def guarantees() -> dict[str, str]:
    """Each kind's ``guarantee``: ``exactly-once`` or ``at-least-once: <why>``."""
    return {name: kind.guarantee for name, kind in KINDS.items()}


def guarantee_table() -> str:
    """The Markdown table of kind, guarantee and why, as docs/rules.md shows it."""
    rows = ["| kind | guarantee | why |", "|---|---|---|"]
    for kind in _ALL:
        level = kind.guarantee.split(":", 1)[0]
        rows.append(f"| `{kind.name}` | {level} | {kind.why} |")
    return "\n".join(rows) + "\n"
