"""``/api/v1/rules``: rule files in, validation, back-tests, enable/disable."""

from __future__ import annotations

import httpx
import pytest

from brokerhooks.api.rules import MAX_RULE_FILE_BYTES
from tests.api.conftest import World

pytestmark = pytest.mark.anyio

RULES = "/api/v1/rules"
YAML = {"Content-Type": "application/yaml"}
NEW_RULES = """\
rules:
  - id: owner-file
    name: A file when the owner changes
    trigger: dealChangesOwner
    actions:
      - kind: write_file
        params:
          path: "owners/{{ deal.id }}.txt"
  - id: note-file
    trigger: noteCreated
    enabled: false
    actions:
      - kind: write_file
        params:
          path: "notes/{{ note.id }}.txt"
"""
BROKEN = """\
rules:
  - id: broken
    trigger: dealChangeStage
    actions:
      - kind: write_file
        params: {path: a.txt}
  - id: misspelt
    trigger: dealChangesStage
    actions:
      - id: task
        kind: write_file
        params:
          path: "{{ deal.nmae }}.txt"
"""


def _headers(world: World) -> dict[str, str]:
    return {**world.acme.headers, **YAML}


async def _rule_ids(client: httpx.AsyncClient, world: World) -> list[str]:
    response = await client.get(RULES, headers=world.acme.headers)
    return [rule["id"] for rule in response.json()["items"]]


async def test_create_adds_every_rule_of_the_file(
    world: World, client: httpx.AsyncClient
) -> None:
    response = await client.post(RULES, content=NEW_RULES, headers=_headers(world))

    assert response.status_code == 201
    created = {rule["id"]: rule for rule in response.json()["items"]}
    assert set(created) == {"owner-file", "note-file"}
    assert created["owner-file"]["name"] == "A file when the owner changes"
    assert created["note-file"]["enabled"] is False
    assert "dealChangesOwner" in created["owner-file"]["source"]
    assert await _rule_ids(client, world) == [
        "acme-only",
        "created-file",
        "note-file",
        "owner-file",
        "stage-file",
    ]


async def test_create_refuses_a_taken_id_and_saves_nothing(
    world: World, client: httpx.AsyncClient
) -> None:
    clash = NEW_RULES + NEW_RULES.split("rules:\n", 1)[1].replace(
        "owner-file", "stage-file"
    ).replace("note-file", "fresh-file")

    response = await client.post(RULES, content=clash, headers=_headers(world))

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "stage-file" in response.json()["detail"]
    assert "owner-file" not in await _rule_ids(client, world)


async def test_an_invalid_file_gets_422_with_every_problem(
    world: World, client: httpx.AsyncClient
) -> None:
    response = await client.post(RULES, content=BROKEN, headers=_headers(world))

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_rules"
    problems = {problem["field"]: problem for problem in body["errors"]}
    assert problems["trigger"]["rule"] == "broken"
    assert "dealChangeStage" in problems["trigger"]["problem"]
    assert "dealChangesStage" in problems["trigger"]["fix"]
    assert problems["trigger"]["line"] == 3
    assert problems["params.path"]["rule"] == "misspelt"
    assert "broken" not in await _rule_ids(client, world)


@pytest.mark.parametrize(
    "text",
    ["", "null\n", "# nothing\n", "rules: []\n"],
    ids=["empty", "null", "comment", "no-rules"],
)
async def test_a_file_without_rules_gets_422(
    world: World, client: httpx.AsyncClient, text: str
) -> None:
    response = await client.post(RULES, content=text, headers=_headers(world))

    assert response.status_code == 422
    assert response.json()["errors"][0]["problem"] == "the file holds no rules"


async def test_what_the_store_cannot_hold_gets_422(
    world: World, client: httpx.AsyncClient
) -> None:
    long_id = "a" * 101
    text = f"""\
rules:
  - id: {long_id}
    trigger: dealCreated
    actions: [{{kind: write_file, params: {{path: a.txt}}}}]
  - id: nul-name
    name: "bad\\0name"
    trigger: dealCreated
    actions: [{{kind: write_file, params: {{path: a.txt}}}}]
"""
    response = await client.post(RULES, content=text, headers=_headers(world))

    assert response.status_code == 422
    assert [problem["field"] for problem in response.json()["errors"]] == [
        "id",
        "name",
    ]


async def test_validate_lists_problems_without_saving(
    world: World, client: httpx.AsyncClient
) -> None:
    broken = await client.post(
        f"{RULES}/validate", content=BROKEN, headers=_headers(world)
    )
    fine = await client.post(
        f"{RULES}/validate", content=NEW_RULES, headers=_headers(world)
    )

    assert broken.status_code == fine.status_code == 200
    assert fine.json() == {"valid": True, "errors": []}
    report = broken.json()
    assert report["valid"] is False
    template = next(e for e in report["errors"] if e["step"] == "task")
    assert template == {
        "rule": "misspelt",
        "step": "task",
        "field": "params.path",
        "problem": template["problem"],
        "fix": template["fix"],
        "line": template["line"],
    }
    assert "deal.nmae" in template["problem"]
    assert "deal.name" in template["fix"]
    assert await _rule_ids(client, world) == ["acme-only", "created-file", "stage-file"]


async def test_validate_knows_the_brokers_connections(
    world: World, client: httpx.AsyncClient
) -> None:
    text = """\
rules:
  - id: task
    trigger: dealCreated
    actions:
      - kind: todo_task
        connection: office
        params: {list: Deals, title: "{{ deal.name }}"}
"""
    response = await client.post(
        f"{RULES}/validate", content=text, headers=_headers(world)
    )

    [problem] = response.json()["errors"]
    assert problem["field"] == "connection"
    assert "office" in problem["problem"]


async def test_replace_a_rule(world: World, client: httpx.AsyncClient) -> None:
    text = """\
rules:
  - id: stage-file
    name: Renamed
    enabled: false
    trigger: dealChangesStage
    actions:
      - kind: write_file
        params: {path: renamed.txt}
"""
    response = await client.put(
        f"{RULES}/stage-file", content=text, headers=_headers(world)
    )

    assert response.status_code == 200
    rule = response.json()
    assert rule["name"] == "Renamed"
    assert rule["enabled"] is False
    assert "renamed.txt" in rule["source"]
    stored = await client.get(f"{RULES}/stage-file", headers=world.acme.headers)
    assert stored.json() == rule


async def test_replace_takes_only_the_rule_it_names(
    world: World, client: httpx.AsyncClient
) -> None:
    unknown = await client.put(
        f"{RULES}/no-such-rule", content=NEW_RULES, headers=_headers(world)
    )
    other = await client.put(
        f"{RULES}/stage-file", content=NEW_RULES, headers=_headers(world)
    )
    broken = await client.put(
        f"{RULES}/stage-file", content=BROKEN, headers=_headers(world)
    )

    assert unknown.status_code == 404
    assert other.status_code == broken.status_code == 422
    assert "stage-file" in other.json()["errors"][0]["problem"]
    assert await _rule_ids(client, world) == ["acme-only", "created-file", "stage-file"]


async def test_enable_disable_and_delete(
    world: World, client: httpx.AsyncClient
) -> None:
    disabled = await client.post(
        f"{RULES}/stage-file/disable", headers=world.acme.headers
    )
    enabled = await client.post(
        f"{RULES}/created-file/enable", headers=world.acme.headers
    )
    deleted = await client.delete(f"{RULES}/acme-only", headers=world.acme.headers)
    gone = await client.get(f"{RULES}/acme-only", headers=world.acme.headers)

    assert disabled.status_code == enabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert enabled.json()["enabled"] is True
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert gone.json() == {"error": "not_found", "detail": "no rule acme-only"}


async def test_backtest_reports_what_would_have_fired(
    world: World, client: httpx.AsyncClient
) -> None:
    text = """\
rules:
  - id: approved
    trigger: dealChangesStage
    condition: changes.stage.to.name == "6. Approved"
    actions:
      - id: file
        kind: write_file
        params: {path: "approved/{{ deal.id }}.txt"}
  - id: never
    trigger: dealChangesStage
    condition: "false"
    actions:
      - kind: write_file
        params: {path: never.txt}
"""
    response = await client.post(f"{RULES}/test", content=text, headers=_headers(world))
    later = await client.post(
        f"{RULES}/test",
        params={"since": "2999-01-01T00:00:00Z"},
        content=text,
        headers=_headers(world),
    )

    assert response.status_code == 200
    report = response.json()
    assert report["evaluated"] == 2
    assert report["fired"] == 1
    [event] = report["events"]
    assert event["event"] == world.acme.processed[-1]
    outcomes = {run["rule"]: run["outcome"] for run in event["runs"]}
    assert outcomes == {"approved": "fired", "never": "condition_false"}
    approved = next(run for run in event["runs"] if run["rule"] == "approved")
    assert approved["steps"][0]["params"]["path"].startswith("approved/")
    assert later.json()["evaluated"] == 0
    # Nothing was saved or run.
    assert "approved" not in await _rule_ids(client, world)


async def test_backtest_of_an_invalid_file_gets_422(
    world: World, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        f"{RULES}/test", content=BROKEN, headers=_headers(world)
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_rules"


async def test_a_body_that_is_not_utf8_gets_400(
    world: World, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        RULES, content=b"rules: \xff\xfe", headers=_headers(world)
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_body_over_the_limit_gets_413(
    world: World, client: httpx.AsyncClient
) -> None:
    text = "# padding\n" * (MAX_RULE_FILE_BYTES // 10 + 1)

    response = await client.post(
        f"{RULES}/validate", content=text, headers=_headers(world)
    )

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


async def test_the_token_is_checked_before_the_body_is_read(
    world: World, client: httpx.AsyncClient
) -> None:
    response = await client.post(RULES, content=b"\xff" * 10, headers=YAML)

    assert response.status_code == 401


async def test_the_content_type_does_not_matter(
    world: World, client: httpx.AsyncClient
) -> None:
    """``curl --data-binary @rules.yaml`` sends a form's content type."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    response = await client.post(
        f"{RULES}/validate", content=NEW_RULES, headers={**world.acme.headers, **form}
    )

    assert response.json() == {"valid": True, "errors": []}
