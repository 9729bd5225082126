"""``brokerhooks simulators`` runs stand-ins; ``brokerhooks simulate`` drives them.

``simulate`` talks to a running SalesTrekker simulator over its ``/_sim``
control API, so that a demo can make SalesTrekker "do" things: create and
move deals, write notes, play a whole loan journey, inject faults.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
import httpx
import uvicorn

from brokerhooks.cli.base import echo_json
from brokerhooks.logs import configure_logging
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator, seed

DEFAULT_PORT = 8100
DEFAULT_SIMULATOR_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
STATUSES = ("won", "lost", "in_progress")


@click.group()
def simulators() -> None:
    """Run local stand-ins of outside systems, for demos and tests."""


@simulators.command("salestrekker")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535)
)
@click.option(
    "--webhook-url",
    help="Where to POST webhooks, e.g. http://127.0.0.1:8000/hooks/salestrekker. "
    "Without it webhooks are only recorded.",
)
@click.option(
    "--api-key",
    envvar="BROKERHOOKS_SIMULATOR_API_KEY",
    required=True,
    help="The API key the simulator accepts and sends with each webhook: the "
    "key the broker was added with. Or set BROKERHOOKS_SIMULATOR_API_KEY.",
)
def salestrekker_simulator(
    host: str, port: int, webhook_url: str | None, api_key: str
) -> None:
    """Serve a SalesTrekker simulator with a demo organisation."""
    configure_logging("auto", "INFO")
    simulator = SalesTrekkerSimulator(api_key, webhook_url)
    base = f"http://{host}:{port}"
    click.echo(f"SalesTrekker simulator on {base}", err=True)
    click.echo(f"  GraphQL:     {base}/graphql", err=True)
    click.echo(f"  control:     {base}/_sim/state", err=True)
    click.echo(f"  webhooks to: {webhook_url or '(none, recorded only)'}", err=True)
    click.echo(f"  demo deal:   {seed.DEAL_ID} ({seed.DEAL_NAME})", err=True)
    uvicorn.run(
        simulator.app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


class SimulatorControl:
    """The ``/_sim`` control API of a running SalesTrekker simulator."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one control request; ClickException if it fails."""
        try:
            response = httpx.request(
                method, self.url + "/_sim" + path, json=body, timeout=30
            )
        except httpx.HTTPError as error:
            raise click.ClickException(
                f"cannot reach the SalesTrekker simulator at {self.url} "
                f"({type(error).__name__}); start it with `brokerhooks simulators "
                "salestrekker` or pass --simulator-url"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text[:200]}
        if response.is_error:
            detail = answer.get("error") if isinstance(answer, dict) else answer
            raise click.ClickException(f"the simulator refused {path}: {detail}")
        return answer


pass_control = click.make_pass_decorator(SimulatorControl)


@click.group()
@click.option(
    "--simulator-url",
    default=DEFAULT_SIMULATOR_URL,
    show_default=True,
    envvar="BROKERHOOKS_SIMULATOR_URL",
    help="The running simulator (`brokerhooks simulators salestrekker`).",
)
@click.pass_context
def simulate(ctx: click.Context, simulator_url: str) -> None:
    """Make a running SalesTrekker simulator change things and send webhooks."""
    ctx.obj = SimulatorControl(simulator_url)


@simulate.command("deal")
@click.option("--deal", "deal_id", help="The deal to change; default: the demo deal.")
@click.option("--create", is_flag=True, help="Create a new deal (needs --name).")
@click.option("--name", help="The new deal's name.")
@click.option("--stage", help='Move to this stage, e.g. "6. Approved".')
@click.option("--owner", help="Give the deal to this user (name or id).")
@click.option(
    "--due-date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Set the due date (YYYY-MM-DD).",
)
@click.option("--status", type=click.Choice(STATUSES), help="Mark won, lost, ...")
@click.option("--value", type=float, help="The loan amount of a new deal.")
@click.option("--contact", "contact_id", help="The client of a new deal.")
@pass_control
def deal(
    control: SimulatorControl,
    deal_id: str | None,
    create: bool,
    name: str | None,
    stage: str | None,
    owner: str | None,
    due_date: datetime | None,
    status: str | None,
    value: float | None,
    contact_id: str | None,
) -> None:
    """Create a deal, or change one: stage, owner, due date, status.

    Each change sends its webhook; they go in the order of the options
    above.
    """
    due = due_date.date().isoformat() if due_date else None
    if create:
        if not name:
            raise click.UsageError("--create needs --name")
        body = {"name": name, "stage": stage, "owner": owner, "value": value}
        body |= {"contact": contact_id, "dueDate": due}
        answer = control.call("POST", "/deals", body)
        click.echo(f"deal {answer['id']}: {', '.join(answer['events'])}")
        return

    deal_id = deal_id or seed.DEAL_ID
    changes: list[tuple[str, dict[str, Any], object]] = [
        ("stage", {"stage": stage}, stage),
        ("owner", {"owner": owner}, owner),
        ("due-date", {"dueDate": due}, due),
        ("status", {"status": status}, status),
    ]
    wanted = [(path, body) for path, body, given in changes if given is not None]
    if not wanted:
        raise click.UsageError(
            "nothing to do: give --create, --stage, --owner, --due-date or --status"
        )
    for path, body in wanted:
        answer = control.call("POST", f"/deals/{deal_id}/{path}", body)
        _echo_change(deal_id, answer)


@simulate.command("note")
@click.option("--deal", "deal_id", help="The deal; default: the demo deal.")
@click.option("--content", required=True, help="The note's text.")
@pass_control
def note(control: SimulatorControl, deal_id: str | None, content: str) -> None:
    """Write a note on a deal (noteCreated)."""
    deal_id = deal_id or seed.DEAL_ID
    answer = control.call("POST", f"/deals/{deal_id}/notes", {"content": content})
    click.echo(f"note {answer['id']} on deal {deal_id}: noteCreated")


@simulate.command("journey")
@click.option(
    "--pause",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 60),
    help="Seconds between steps.",
)
@click.option("--name", help="The deal's name; default: a new one each time.")
@pass_control
def journey(control: SimulatorControl, pause: float, name: str | None) -> None:
    """Play a home loan from enquiry to settlement, one webhook at a time.

    Creates a deal for the demo client, moves it through the stages, writes
    a note, books the settlement date and marks the deal won.
    """
    stages = seed.HOME_LOAN_STAGES
    name = name or f"Journey {datetime.now(UTC):%H:%M:%S} - Citizen refinance"
    created = control.call(
        "POST",
        "/deals",
        {"name": name, "stage": stages[0], "contact": seed.JANE_ID, "value": 720000},
    )
    deal_id = created["id"]
    click.echo(f"deal {deal_id}: dealCreated ({stages[0]})")

    settlement = (date.today() + timedelta(days=28)).isoformat()
    steps: list[tuple[str, dict[str, Any]]] = [
        *[("stage", {"stage": stage}) for stage in stages[1:4]],
        ("notes", {"content": "Lodged with the lender; valuation ordered."}),
        *[("stage", {"stage": stage}) for stage in stages[4:6]],
        ("due-date", {"dueDate": settlement}),
        *[("stage", {"stage": stage}) for stage in stages[6:]],
        ("status", {"status": "won"}),
    ]
    for path, body in steps:
        time.sleep(pause)
        answer = control.call("POST", f"/deals/{deal_id}/{path}", body)
        _echo_change(deal_id, answer, next(iter(body.values())))


@simulate.command("faults")
@click.option("--latency", type=click.FloatRange(0), help="Seconds added per call.")
@click.option("--fail-next", type=click.IntRange(0), help="Fail the next N calls.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), help="Fail a fraction.")
@click.option("--failure-status", type=click.IntRange(400, 599), help="Default 503.")
@click.option(
    "--expire-tokens/--accept-tokens",
    default=None,
    help="Answer every session token as expired, or stop doing so.",
)
@click.option("--revoke-tokens", is_flag=True, help="Expire the tokens issued so far.")
@click.option(
    "--remove-field",
    "remove_fields",
    multiple=True,
    metavar="TYPE.FIELD",
    help="Stop serving a field, e.g. Ticket.dueDate or Query.note.",
)
@click.option("--restore-schema", is_flag=True, help="Serve the full schema again.")
@pass_control
def faults(
    control: SimulatorControl,
    latency: float | None,
    fail_next: int | None,
    failure_rate: float | None,
    failure_status: int | None,
    expire_tokens: bool | None,
    revoke_tokens: bool,
    remove_fields: tuple[str, ...],
    restore_schema: bool,
) -> None:
    """Inject faults into the simulator's GraphQL API; print them all."""
    body: dict[str, Any] = {
        "latency": latency,
        "fail_next": fail_next,
        "failure_rate": failure_rate,
        "failure_status": failure_status,
        "expire_tokens": expire_tokens,
    }
    body = {name: value for name, value in body.items() if value is not None}
    if revoke_tokens:
        body["revoke_tokens"] = True
    if restore_schema:
        body["restore_schema"] = True
    if remove_fields:
        body["remove_fields"] = list(remove_fields)
    echo_json(control.call("POST" if body else "GET", "/faults", body or None))


@simulate.command("webhooks")
@pass_control
def webhooks(control: SimulatorControl) -> None:
    """List the webhooks the simulator sent, with the answer to each."""
    for sent in control.call("GET", "/webhooks"):
        outcome = sent["status"] if sent["status"] is not None else sent["error"]
        click.echo(f"{sent['sent_at']}  {sent['event']:<30} {sent['id']}  {outcome}")


def _echo_change(deal_id: str, answer: dict[str, Any], detail: object = None) -> None:
    events = ", ".join(answer.get("events") or []) or "no change, no webhook"
    suffix = f" ({detail})" if detail is not None else ""
    click.echo(f"deal {deal_id}: {events}{suffix}")
