"""The demo data a new simulator starts with, under stable ids.

Ids are UUID5s of a name, so that tests, demos and documentation can refer
to the same deal or stage in every run.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "brokerhooks:simulators:salestrekker")


def stable_id(name: str) -> str:
    """The simulator's id for ``name``: the same in every run."""
    return str(uuid.uuid5(NAMESPACE, name))


ORGANISATION_ID = stable_id("organisation/harbour-home-loans")
ORGANISATION_NAME = "Harbour Home Loans"

# The user the API key belongs to owns what is created through the API.
OWNER_ID = stable_id("user/alex-morgan")
ASSISTANT_ID = stable_id("user/sam-lee")
USERS = {
    OWNER_ID: ("Alex Morgan", "alex@harbourhomeloans.example"),
    ASSISTANT_ID: ("Sam Lee", "sam@harbourhomeloans.example"),
}

HOME_LOAN_WORKFLOW_ID = stable_id("workflow/home-loan")
HOME_LOAN_STAGES = (
    "1. Initial Enquiry",
    "2. Fact Find",
    "3. Needs Analysis",
    "4. Lodged",
    "5. Conditionally Approved",
    "6. Approved",
    "7. Unconditional",
    "8. Settlement Booked",
    "9. Settled",
)
ASSET_FINANCE_WORKFLOW_ID = stable_id("workflow/asset-finance")
ASSET_FINANCE_STAGES = ("1. Enquiry", "2. Submitted", "3. Approved", "4. Settled")
WORKFLOWS = {
    HOME_LOAN_WORKFLOW_ID: ("Home Loan", HOME_LOAN_STAGES),
    ASSET_FINANCE_WORKFLOW_ID: ("Asset Finance", ASSET_FINANCE_STAGES),
}


def stage_id(workflow_id: str, stage_name: str) -> str:
    return stable_id(f"stage/{workflow_id}/{stage_name}")


HOME_LOAN_STAGE_IDS = {
    name: stage_id(HOME_LOAN_WORKFLOW_ID, name) for name in HOME_LOAN_STAGES
}

LABELS = ("Client", "Hot lead", "Refinance", "First home buyer", "Investor")
LABEL_IDS = {name: stable_id(f"label/{name}") for name in LABELS}

JANE_ID = stable_id("contact/jane-citizen")
RAJ_ID = stable_id("contact/raj-patel")
DEAL_ID = stable_id("deal/citizen-purchase")
DEAL_NAME = "Citizen - Purchase, 12 Wharf St"
NOTE_ID = stable_id("note/citizen-purchase/first-call")
