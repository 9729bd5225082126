"""Changes between snapshots."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from brokerhooks.pipeline.changes import compute_changes

APPROVED = {"id": "s6", "name": "6. Approved"}
LODGED = {"id": "s4", "name": "4. Lodged"}


def deal(**overrides: Any) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "id": "d1",
        "name": "Smith home loan",
        "description": None,
        "idOwner": "u1",
        "isActive": True,
        "idWorkflow": "w1",
        "workflow": {"id": "w1", "name": "Home Loan"},
        "idStage": "s4",
        "stage": LODGED,
        "idClients": ["c2", "c1"],
        "idLabels": ["l1"],
        "labels": [{"id": "l1", "name": "Client"}, {"id": "l2", "name": "Hot"}],
        "values": {"onceOff": 650000.0},
        "dueDate": None,
        "isWon": False,
        "isLost": False,
        "isSettled": False,
        "isInProgress": True,
    }
    snapshot.update(overrides)
    return snapshot


def test_first_snapshot_has_no_changes() -> None:
    assert compute_changes("deal", None, deal()) == {}


def test_identical_snapshots_have_no_changes() -> None:
    assert compute_changes("deal", deal(), copy.deepcopy(deal())) == {}


@pytest.mark.parametrize(
    ("overrides", "name", "before", "after"),
    [
        ({"idStage": "s6", "stage": APPROVED}, "stage", LODGED, APPROVED),
        ({"idOwner": "u2"}, "owner", "u1", "u2"),
        ({"dueDate": 1_790_000_000_000}, "due_date", None, 1_790_000_000_000),
        ({"values": {"onceOff": 700000.0}}, "amount", 650000.0, 700000.0),
        ({"isWon": True}, "won", False, True),
        ({"isSettled": True}, "settled", False, True),
        ({"isInProgress": False}, "in_progress", True, False),
        ({"isActive": False}, "active", True, False),
        ({"idClients": ["c1"]}, "clients", ["c1", "c2"], ["c1"]),
        (
            {"idLabels": ["l1", "l2"]},
            "labels",
            [{"id": "l1", "name": "Client"}],
            [{"id": "l1", "name": "Client"}, {"id": "l2", "name": "Hot"}],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_deal_changes(
    overrides: dict[str, Any], name: str, before: Any, after: Any
) -> None:
    changes = compute_changes("deal", deal(), deal(**overrides))

    assert changes == {name: {"from": before, "to": after}}


def test_a_renamed_stage_is_not_a_stage_change() -> None:
    renamed = deal(stage={"id": "s4", "name": "4. Submitted"})

    assert compute_changes("deal", deal(), renamed) == {}


def test_client_order_does_not_matter() -> None:
    assert compute_changes("deal", deal(), deal(idClients=["c1", "c2"])) == {}


def test_contact_changes() -> None:
    before = {
        "person": {
            "information": {"firstName": "Ana", "familyName": "Lee"},
            "contact": {"email": "ana@example.com", "primaryCode": "+61"},
        }
    }
    after = copy.deepcopy(before)
    after["person"]["information"]["familyName"] = "Smith"
    after["person"]["contact"]["email"] = "ana.smith@example.com"
    after["person"]["contact"]["primary"] = "400 000 000"

    changes = compute_changes("contact", before, after)

    assert changes == {
        "family_name": {"from": "Lee", "to": "Smith"},
        "email": {"from": "ana@example.com", "to": "ana.smith@example.com"},
        "phone": {"from": None, "to": "+61 400 000 000"},
    }


def test_note_changes() -> None:
    changes = compute_changes("note", {"content": "a"}, {"content": "b"})

    assert changes == {"content": {"from": "a", "to": "b"}}
