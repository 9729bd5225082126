"""Ready rules with parameters: the gallery.

A recipe is a rule file with ``${name}`` placeholders (``string.Template``,
so they never clash with the ``{{ }}`` of rule templates). Filling the
placeholders gives a rule file that is checked like any other.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

import yaml


@dataclass(frozen=True, slots=True)
class RecipeParam:
    name: str
    description: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Recipe:
    id: str
    title: str
    description: str
    params: tuple[RecipeParam, ...]
    template: str

    def render(self, values: Mapping[str, str]) -> str:
        """The rule file, with ``values`` (or the defaults) filled in.

        ValueError names a missing or unknown parameter.
        """
        known = {param.name for param in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"recipe {self.id} has no parameter {unknown[0]!r}; "
                f"its parameters: {', '.join(sorted(known))}"
            )
        filled: dict[str, str] = {}
        for param in self.params:
            value = values.get(param.name, param.default)
            if value is None:
                raise ValueError(
                    f"recipe {self.id} needs {param.name}: {param.description}"
                )
            # Values go into double-quoted YAML scalars.
            filled[param.name] = yaml.safe_dump(value, default_style='"').strip()[1:-1]
        return string.Template(self.template).substitute(filled)


_CONNECTION = RecipeParam(
    "connection", "the broker's Microsoft 365 connection to act through", "office"
)
_RULE_ID = "${rule_id}"

RECIPES: dict[str, Recipe] = {
    recipe.id: recipe
    for recipe in (
        Recipe(
            id="stage-task",
            title="Stage reached → To Do task for the owner",
            description="When a deal moves into a stage, add a task to a To Do list.",
            params=(
                RecipeParam("rule_id", "the new rule's id", "stage-task"),
                RecipeParam("stage", "the stage's name", "6. Approved"),
                RecipeParam("list", "the To Do list", "Deals"),
                RecipeParam(
                    "title", "the task's title", "Order valuation: {{ deal.name }}"
                ),
                RecipeParam("due_days", "days after the event the task is due", "2"),
                _CONNECTION,
            ),
            template=f"""\
rules:
  - id: "{_RULE_ID}"
    name: "Task when a deal reaches ${{stage}}"
    trigger: dealChangesStage
    condition: >-
      has(changes.stage) && changes.stage.to.name == "${{stage}}"
    actions:
      - id: task
        kind: todo_task
        connection: "${{connection}}"
        params:
          list: "${{list}}"
          title: "${{title}}"
          body: "{{{{ deal.name }}}} moved from {{{{ changes.stage.from.name }}}} to {{{{ changes.stage.to.name }}}}."
          due: "{{{{ now | date_add(days=${{due_days}}) }}}}"
""",
        ),
        Recipe(
            id="due-date-calendar",
            title="Due date set or changed → calendar event kept in step",
            description=(
                "Keep one calendar event per deal at its due date; it moves when "
                "the date moves."
            ),
            params=(
                RecipeParam("rule_id", "the new rule's id", "due-date-calendar"),
                RecipeParam("hour", "the event's hour on the due date", "10"),
                RecipeParam("duration", "the event's length", "1h"),
                _CONNECTION,
            ),
            template=f"""\
rules:
  - id: "{_RULE_ID}"
    name: "Due date in the calendar"
    trigger: [dealCreated, dealChangesDueDate]
    condition: deal.dueDate != null
    actions:
      - id: event
        kind: calendar_event
        connection: "${{connection}}"
        params:
          subject: "Due: {{{{ deal.name }}}}"
          start: "{{{{ deal.dueDate | date_add(hours=${{hour}}) }}}}"
          duration: "${{duration}}"
          body: "Stage: {{{{ deal.stage.name }}}}"
          on_date_change: update
""",
        ),
        Recipe(
            id="note-mail",
            title="Note added → mail to the deal owner",
            description="Mail the deal's owner when a note is written on the deal.",
            params=(
                RecipeParam("rule_id", "the new rule's id", "note-mail"),
                RecipeParam("to", "the owner's (or team's) e-mail address"),
                _CONNECTION,
            ),
            template=f"""\
rules:
  - id: "{_RULE_ID}"
    name: "Mail the owner about new notes"
    trigger: noteCreated
    actions:
      - id: mail
        kind: send_mail
        connection: "${{connection}}"
        params:
          to: "${{to}}"
          subject: "New note on {{{{ deal.name | default('a deal') }}}}"
          body: "{{{{ note.content }}}}"
""",
        ),
        Recipe(
            id="owner-mail",
            title="Owner changed → mail to the new owner",
            description="Tell the new owner that a deal is now theirs.",
            params=(
                RecipeParam("rule_id", "the new rule's id", "owner-mail"),
                RecipeParam("to", "the address to tell (the new owner or a team)"),
                _CONNECTION,
            ),
            template=f"""\
rules:
  - id: "{_RULE_ID}"
    name: "Mail when a deal changes owner"
    trigger: dealChangesOwner
    condition: has(changes.owner)
    actions:
      - id: mail
        kind: send_mail
        connection: "${{connection}}"
        params:
          to: "${{to}}"
          subject: "{{{{ deal.name }}}} has a new owner"
          body: "The deal {{{{ deal.name }}}} ({{{{ deal.stage.name }}}}) is now owned by {{{{ changes.owner.to }}}}."
""",
        ),
        Recipe(
            id="client-folder",
            title="Deal created → client folder in OneDrive",
            description="Make a folder for the deal's paperwork.",
            params=(
                RecipeParam("rule_id", "the new rule's id", "client-folder"),
                RecipeParam("root", "the folder that holds client folders", "Clients"),
                _CONNECTION,
            ),
            template=f"""\
rules:
  - id: "{_RULE_ID}"
    name: "Client folder for new deals"
    trigger: dealCreated
    actions:
      - id: folder
        kind: onedrive_folder
        connection: "${{connection}}"
        params:
          path: "${{root}}/{{{{ contact.person.information.familyName | default('Unknown') }}}}/{{{{ deal.name }}}}"
""",
        ),
        Recipe(
            id="documents-note",
            title="Required documents changed → note on the deal",
            description="Write a note on the deal when its required documents change.",
            params=(
                RecipeParam("rule_id", "the new rule's id", "documents-note"),
                RecipeParam(
                    "content",
                    "the note's text",
                    "Required documents changed on {{ now | date }}: please review.",
                ),
            ),
            template=f"""\
rules:
  - id: "{_RULE_ID}"
    name: "Note when required documents change"
    trigger: dealChangesRequiredDocuments
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "${{content}}"
""",
        ),
        Recipe(
            id="client-mail-note",
            title="Mail from a client → note on their deal",
            description=(
                "When a mail from a client arrives in the connection's inbox, "
                "write it as a note on the client's deal. Needs an inbox "
                "subscription: `brokerhooks connections m365 subscribe NAME "
                "--resource inbox`."
            ),
            params=(
                RecipeParam("rule_id", "the new rule's id", "client-mail-note"),
                RecipeParam(
                    "content",
                    "the note's text",
                    "Mail from {{ message.from.name | default(message.from.address) }} "
                    "<{{ message.from.address }}>: {{ message.subject }}\n\n"
                    "{{ message.bodyPreview }}",
                ),
            ),
            template="""\
rules:
  - id: "${rule_id}"
    name: "Client mail as a note on the deal"
    trigger: messageCreated
    condition: deal != null
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "${content}"
""",
        ),
        Recipe(
            id="task-done-note",
            title="To Do task completed → note on the deal",
            description=(
                "When a To Do task that a rule made for a deal is ticked off, "
                "note it on the deal. Needs a todo subscription on the task's "
                "list: `brokerhooks connections m365 subscribe NAME --resource "
                "todo --list LIST`."
            ),
            params=(
                RecipeParam("rule_id", "the new rule's id", "task-done-note"),
                RecipeParam(
                    "content",
                    "the note's text",
                    "Done in To Do: {{ task.title }}",
                ),
            ),
            template="""\
rules:
  - id: "${rule_id}"
    name: "Note when a deal's To Do task is done"
    trigger: taskCompleted
    condition: deal != null
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "${content}"
""",
        ),
    )
}


def get_recipe(recipe_id: str) -> Recipe:
    try:
        return RECIPES[recipe_id]
    except KeyError:
        raise ValueError(
            f"no recipe {recipe_id!r}; the recipes: {', '.join(sorted(RECIPES))}"
        ) from None
