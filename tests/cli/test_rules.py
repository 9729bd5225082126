"""The command line: rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.rules.recipes import RECIPES
from brokerhooks.rules.validate import validate_rules
from brokerhooks.security.secrets import Vault
from tests.helpers import add_broker

GOOD = """\
rules:
  - id: approved-note
    name: Note when approved
    trigger: dealChangesStage
    condition: has(changes.stage) && changes.stage.to.name == "6. Approved"
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "Approved: {{ deal.name }}"
  - id: created-note
    trigger: dealCreated
    actions:
      - kind: salestrekker_note
        params:
          content: "Welcome {{ deal.name }}"
"""

MISTAKE = GOOD.replace("{{ deal.name }}", "{{ deal.nmae }}", 1)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(MISTAKE)
    return good, bad


@pytest.fixture
def broker(settings: Settings, engine: Engine) -> str:
    return add_broker(engine, Vault(settings.fernet_keys), "acme").name


def test_validate_names_rule_step_field_and_fix(files: tuple[Path, Path]) -> None:
    good, bad = files

    ok = run("rules", "validate", str(good))
    wrong = run("rules", "validate", str(bad))

    assert ok.exit_code == 0
    assert wrong.exit_code == 1
    assert "rule approved-note, step note, params.content" in wrong.output
    assert "did you mean deal.name?" in wrong.output


def test_load_list_disable_enable(files: tuple[Path, Path], broker: str) -> None:
    good, bad = files

    refused = run("rules", "load", str(bad), "--broker", broker)
    loaded = run("rules", "load", str(good), "--broker", broker)
    again = run("rules", "load", str(good), "--broker", broker)
    disabled = run("rules", "disable", "created-note", "--broker", broker)
    listed = json.loads(run("rules", "list", "--broker", broker, "--json").output)

    assert refused.exit_code == 1
    assert loaded.output.strip() == "acme: 2 rule(s) added, 0 replaced"
    assert again.output.strip() == "acme: 0 rule(s) added, 2 replaced"
    assert disabled.exit_code == 0
    assert [(rule["id"], rule["enabled"]) for rule in listed] == [
        ("approved-note", True),
        ("created-note", False),
    ]
    assert "Approved: {{ deal.name }}" in listed[0]["source"]
    assert run("rules", "enable", "created-note", "--broker", broker).exit_code == 0


def test_load_with_replace_removes_the_others(
    files: tuple[Path, Path], broker: str, tmp_path: Path
) -> None:
    good, _ = files
    run("rules", "load", str(good), "--broker", broker)
    only_one = tmp_path / "one.yaml"
    only_one.write_text(GOOD.split("  - id: created-note")[0])

    result = run("rules", "load", str(only_one), "--broker", broker, "--replace")
    listed = json.loads(run("rules", "list", "--broker", broker, "--json").output)

    assert "1 removed" in result.output
    assert [rule["id"] for rule in listed] == ["approved-note"]


def test_unknown_rule_cannot_be_enabled(broker: str) -> None:
    result = run("rules", "enable", "nope", "--broker", broker)

    assert "no rule 'nope'" in str(result.exception)


@pytest.mark.parametrize("recipe_id", sorted(RECIPES))
def test_every_recipe_gives_a_valid_rule(recipe_id: str) -> None:
    recipe = RECIPES[recipe_id]
    values = {p.name: "team@example.com" for p in recipe.params if p.default is None}

    text = recipe.render(values)

    assert validate_rules(text, source_name=recipe_id, connections=["office"]) == []


def test_recipe_needs_its_parameters() -> None:
    with pytest.raises(ValueError, match="note-mail needs to"):
        RECIPES["note-mail"].render({})
    with pytest.raises(ValueError, match="has no parameter 'colour'"):
        RECIPES["note-mail"].render({"to": "a@example.com", "colour": "red"})


def test_add_recipe_saves_the_rule(broker: str) -> None:
    listed = run("rules", "recipes", "--json")
    added = run(
        "rules",
        "add-recipe",
        "documents-note",
        "--broker",
        broker,
        "--set",
        "rule_id=docs",
        "--set",
        "content=Check the documents of {{ deal.name }}",
    )
    stored = json.loads(run("rules", "list", "--broker", broker, "--json").output)

    assert {recipe["id"] for recipe in json.loads(listed.output)} == set(RECIPES)
    assert added.exit_code == 0, added.output
    assert [rule["id"] for rule in stored] == ["docs"]
    assert "Check the documents of {{ deal.name }}" in stored[0]["source"]


def test_add_recipe_refuses_an_unknown_connection(broker: str) -> None:
    result = run(
        "rules",
        "add-recipe",
        "client-folder",
        "--broker",
        broker,
        "--set",
        "connection=nope",
    )

    assert result.exit_code == 1
    assert "nope" in result.output


def test_an_empty_rule_file_loads_nothing(broker: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")

    result = run("rules", "load", str(empty), "--broker", broker)

    assert result.exit_code == 0, result.output
    assert "0 rule(s) added" in result.output


def test_ids_and_names_must_fit_the_store(broker: str, tmp_path: Path) -> None:
    long_id = "r" * 101
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.replace("id: approved-note", f"id: {long_id}").replace(
            "name: Note when approved", 'name: "bad\\0name"'
        )
    )

    result = run("rules", "load", str(bad), "--broker", broker)

    assert result.exit_code == 1
    assert "the id has 101 characters" in result.output
