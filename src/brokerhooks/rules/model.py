"""A broker's rule file as typed data.

A file holds rules; a rule holds a trigger (event types), an optional CEL
condition and one or more steps; a step has an action kind, the kind's
params, and optionally a connection and a delay or schedule. The models
check shape and types only. Whether a condition or template names real
fields is the validator's job (``brokerhooks.rules.validate``), because it
needs the trigger's event types and the sample data.

Every text param listed in a kind's ``texts`` is a Jinja2 template; its
``TextKind`` says what the rendered text must be.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from brokerhooks.ingest.msgraph_events import EVENT_SUBJECTS as GRAPH_EVENT_SUBJECTS
from brokerhooks.ingest.msgraph_events import canonical_graph_event_name
from brokerhooks.ingest.salestrekker_events import EVENT_SUBJECTS, canonical_event_name
from brokerhooks.rules.fields import closest


def invalid(problem: str, fix: str) -> PydanticCustomError:
    """A validation error whose fix the validator reports beside it."""
    return PydanticCustomError("rule", "{problem}", {"problem": problem, "fix": fix})


# ---------------------------------------------------------------- durations

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[wdhms])+")
DURATION_FIX = "write a number and a unit (s, m, h, d, w), e.g. 30m, 2h, 2d, 1w, 1h30m"


def parse_duration(value: object) -> timedelta:
    """``30m``, ``2h``, ``2d``, ``1w`` or combinations like ``1d12h``."""
    if isinstance(value, timedelta):
        return value
    text = value.replace(" ", "").lower() if isinstance(value, str) else ""
    if not _DURATION.fullmatch(text):
        raise invalid(f"{value!r} is not a duration", DURATION_FIX)
    seconds = sum(
        int(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+)(\w)", text)
    )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text ``parse_duration`` reads back as ``value``."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0m"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)
]

# ---------------------------------------------------------------- params

_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_SLUG = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


class TextKind(StrEnum):
    """What a rendered template param must be."""

    TEXT = "text"
    DATETIME = "datetime"  # ISO 8601 date or date-time, or epoch milliseconds
    ADDRESSES = "addresses"  # e-mail addresses, separated by commas or semicolons
    URL = "url"  # an http or https URL
    PATH = "path"  # a relative path with / between folders, no ..


class Params(BaseModel):
    """Base of each kind's params. ``texts`` lists the template params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    texts: ClassVar[dict[str, TextKind]] = {}
    required: ClassVar[frozenset[str]] = frozenset()


Addresses = str | list[str]


class TodoTaskParams(Params):
    list_name: str = Field(alias="list")
    title: str
    body: str | None = None
    due: str | None = None
    reminder: str | None = None

    texts = {
        "list": TextKind.TEXT,
        "title": TextKind.TEXT,
        "body": TextKind.TEXT,
        "due": TextKind.DATETIME,
        "reminder": TextKind.DATETIME,
    }
    required = frozenset({"list", "title"})


class SendMailParams(Params):
    to: Addresses
    cc: Addresses | None = None
    subject: str
    body: str
    html: bool = False

    texts = {
        "to": TextKind.ADDRESSES,
        "cc": TextKind.ADDRESSES,
        "subject": TextKind.TEXT,
        "body": TextKind.TEXT,
    }
    required = frozenset({"to", "subject"})


class CalendarEventParams(Params):
    subject: str
    start: str
    end: str | None = None
    duration: Duration | None = None
    attendees: Addresses | None = None
    location: str | None = None
    body: str | None = None
    on_date_change: Literal["update", "cancel"] = "update"

    texts = {
        "subject": TextKind.TEXT,
        "start": TextKind.DATETIME,
        "end": TextKind.DATETIME,
        "attendees": TextKind.ADDRESSES,
        "location": TextKind.TEXT,
        "body": TextKind.TEXT,
    }
    required = frozenset({"subject", "start"})

    @field_validator("duration")
    @classmethod
    def _end_or_duration(
        cls, value: timedelta | None, info: ValidationInfo
    ) -> timedelta | None:
        if value is not None and info.data.get("end") is not None:
            raise invalid(
                "end and duration are both given", "keep one of end and duration"
            )
        return value


class OneDriveFolderParams(Params):
    path: str

    texts = {"path": TextKind.PATH}
    required = frozenset({"path"})


class OneDriveUploadParams(Params):
    path: str
    content: str | None = None
    source: str | None = Field(default=None, validate_default=True)

    texts = {
        "path": TextKind.PATH,
        "content": TextKind.TEXT,
        "source": TextKind.URL,
    }
    required = frozenset({"path"})

    @field_validator("source")
    @classmethod
    def _content_or_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_content = info.data.get("content") is not None
        if (value is not None) == has_content:
            raise invalid(
                "give exactly one of content and source",
                "content is the file's text; source is a URL to copy the file from",
            )
        return value


class SalesTrekkerNoteParams(Params):
    content: str

    texts = {"content": TextKind.TEXT}
    required = frozenset({"content"})


JSONBody = str | dict[str, Any] | list[Any]


class HttpRequestParams(Params):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: JSONBody | None = None

    texts = {"url": TextKind.URL, "headers": TextKind.TEXT, "body": TextKind.TEXT}
    required = frozenset({"url"})

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class WriteFileParams(Params):
    path: str
    content: str | None = None

    texts = {"path": TextKind.PATH, "content": TextKind.TEXT}
    required = frozenset({"path"})


# ---------------------------------------------------------------- steps

MICROSOFT_365_KINDS = frozenset(
    {"todo_task", "send_mail", "calendar_event", "onedrive_folder", "onedrive_upload"}
)


class Schedule(BaseModel):
    """Run a step at a time taken from the data: before or after a date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    before: str | None = None
    after: str | None = None
    offset: Duration = timedelta(0)

    @model_validator(mode="after")
    def _one_anchor(self) -> Schedule:
        if (self.before is None) == (self.after is None):
            raise invalid(
                "a schedule needs exactly one of before and after",
                "write e.g. schedule: {before: deal.dueDate, offset: 2d}",
            )
        if not _PATH.fullmatch(self.field):
            raise invalid(
                f"{self.field!r} is not a field path",
                "name a date field with dots, e.g. deal.dueDate",
            )
        return self

    @property
    def field(self) -> str:
        """The date field the schedule counts from, e.g. ``deal.dueDate``."""
        return self.before if self.before is not None else str(self.after)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.field.split("."))

    @property
    def shift(self) -> timedelta:
        """The signed offset from the date: negative before, positive after."""
        return -self.offset if self.before is not None else self.offset


class StepBase(BaseModel):
    """What every step has, whatever its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: str
    connection: str | None = Field(default=None, validate_default=True)
    delay: Duration | None = None
    schedule: Schedule | None = None
    params: Params

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_slug(value, "step")

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = cls.model_fields["kind"].default or info.data.get("kind")
        if value is None and kind in MICROSOFT_365_KINDS:
            raise invalid(
                f"{kind} needs a Microsoft 365 connection",
                "add connection: <the name of one of the broker's connections>",
            )
        if value is not None and kind not in MICROSOFT_365_KINDS:
            raise invalid(
                f"{kind} takes no connection",
                "remove connection: only Microsoft 365 kinds use one",
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _delay_or_schedule(
        cls, value: Schedule | None, info: ValidationInfo
    ) -> Schedule | None:
        if value is not None and info.data.get("delay") is not None:
            raise invalid("delay and schedule are both given", "keep one of them")
        return value


class TodoTaskStep(StepBase):
    kind: Literal["todo_task"] = "todo_task"
    params: TodoTaskParams


class SendMailStep(StepBase):
    kind: Literal["send_mail"] = "send_mail"
    params: SendMailParams


class CalendarEventStep(StepBase):
    kind: Literal["calendar_event"] = "calendar_event"
    params: CalendarEventParams


class OneDriveFolderStep(StepBase):
    kind: Literal["onedrive_folder"] = "onedrive_folder"
    params: OneDriveFolderParams


class OneDriveUploadStep(StepBase):
    kind: Literal["onedrive_upload"] = "onedrive_upload"
    params: OneDriveUploadParams


class SalesTrekkerNoteStep(StepBase):
    kind: Literal["salestrekker_note"] = "salestrekker_note"
    params: SalesTrekkerNoteParams


class HttpRequestStep(StepBase):
    kind: Literal["http_request"] = "http_request"
    params: HttpRequestParams


class WriteFileStep(StepBase):
    kind: Literal["write_file"] = "write_file"
    params: WriteFileParams


Step = Annotated[
    TodoTaskStep
    | SendMailStep
    | CalendarEventStep
    | OneDriveFolderStep
    | OneDriveUploadStep
    | SalesTrekkerNoteStep
    | HttpRequestStep
    | WriteFileStep,
    Field(discriminator="kind"),
]

PARAMS: dict[str, type[Params]] = {
    "todo_task": TodoTaskParams,
    "send_mail": SendMailParams,
    "calendar_event": CalendarEventParams,
    "onedrive_folder": OneDriveFolderParams,
    "onedrive_upload": OneDriveUploadParams,
    "salestrekker_note": SalesTrekkerNoteParams,
    "http_request": HttpRequestParams,
    "write_file": WriteFileParams,
}
KINDS = tuple(PARAMS)

# ---------------------------------------------------------------- rules


def check_slug(value: str, what: str) -> str:
    if not _SLUG.fullmatch(value):
        example = "-".join(re.findall(r"[a-z0-9]+", value.lower())) or f"my-{what}"
        raise invalid(
            f"{value!r} is not a valid {what} id",
            f"use lowercase letters, digits and hyphens, e.g. {example}",
        )
    return value


# Every event type a trigger can name: SalesTrekker's, then Graph's.
EVENT_TYPES = (*EVENT_SUBJECTS, *GRAPH_EVENT_SUBJECTS)


def canonical_type(name: str) -> str | None:
    """The canonical spelling of a SalesTrekker or Graph event type, or None."""
    return canonical_event_name(name) or canonical_graph_event_name(name)


def canonical_trigger(value: object) -> tuple[str, ...]:
    """The canonical event types a trigger names, in order, without repeats."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise invalid(
            "trigger must name one event type or a list of them",
            "write e.g. trigger: dealChangesStage",
        )
    found: list[str] = []
    for name in names:
        canonical = canonical_type(name) if isinstance(name, str) else None
        if canonical is None:
            guess = closest(str(name), EVENT_TYPES)
            raise invalid(
                f"{name!r} is not an event type",
                f"did you mean {guess}?"
                if guess
                else f"use one of {', '.join(EVENT_TYPES)}",
            )
        if canonical not in found:
            found.append(canonical)
    return tuple(found)


class Rule(BaseModel):
    """A trigger, an optional condition and the steps to take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    description: str = ""
    enabled: bool = True
    trigger: tuple[str, ...]
    condition: str | None = None
    actions: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _number_steps(cls, data: Any) -> Any:
        """Give each step without an id the id ``step-<position>``."""
        if isinstance(data, dict) and isinstance(data.get("actions"), list):
            data = {**data, "actions": list(number_steps(data["actions"]))}
        return data

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_slug(value, "rule")

    @field_validator("trigger", mode="before")
    @classmethod
    def _trigger(cls, value: object) -> tuple[str, ...]:
        return canonical_trigger(value)

    @field_validator("condition")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("actions")
    @classmethod
    def _unique_steps(cls, steps: tuple[StepBase, ...]) -> tuple[StepBase, ...]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise invalid(
                    f"two steps have the id {step.id!r}",
                    "give each step of a rule its own id",
                )
            seen.add(step.id)
        return steps

    @property
    def title(self) -> str:
        return self.name or self.id

    def step(self, step_id: str) -> StepBase:
        for step in self.actions:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def number_steps(actions: list[Any]) -> list[Any]:
    return [
        {"id": f"step-{position}", **action}
        if isinstance(action, dict) and "id" not in action
        else action
        for position, action in enumerate(actions, start=1)
    ]


class RuleFile(BaseModel):
    """A broker's rules, as saved together."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        ids = [rule.id for rule in rules]
        for rule_id in ids:
            if ids.count(rule_id) > 1:
                raise invalid(
                    f"two rules have the id {rule_id!r}",
                    "give each rule its own id",
                )
        return rules

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def triggered_by(self, event_type: str) -> list[Rule]:
        """The enabled rules whose trigger names ``event_type`` (any case)."""
        canonical = canonical_type(event_type)
        return [
            rule for rule in self.rules if rule.enabled and canonical in rule.trigger
        ]
