"""Microsoft Graph as a second event source.

Graph change-notification subscriptions per Microsoft 365 connection, the
keys that recognise Graph's repeated notifications, and an index of
contacts' e-mail addresses and deals' clients, so that a mail can be matched
to its sender's deal. Graph ids (about 150 characters) do not fit the
36-character entity id columns, so those and the job ordering key widen.
The index is filled from the snapshots already stored.

Revision ID: 0006
Revises: 0005
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from brokerhooks.store.types import UTCDateTime, utcnow

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _widen(entity_id=255, ordering_key=300)

    op.create_table(
        "graph_subscriptions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("resource", sa.String(500), nullable=False),
        sa.Column("list_name", sa.String(200), nullable=True),
        sa.Column("change_types", sa.String(60), nullable=False),
        sa.Column("graph_subscription_id", sa.String(100), nullable=True),
        sa.Column("client_state_encrypted", sa.Text(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("last_notification_at", UTCDateTime(), nullable=True),
        sa.Column("last_lifecycle_event", sa.String(40), nullable=True),
        sa.Column("renewed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broker_id"],
            ["brokers.id"],
            name="fk_graph_subscriptions_broker_id_brokers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["m365_connections.id"],
            name="fk_graph_subscriptions_connection_id_m365_connections",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_graph_subscriptions"),
    )
    op.create_index(
        "uq_graph_subscriptions_graph_subscription_id",
        "graph_subscriptions",
        ["graph_subscription_id"],
        unique=True,
    )
    op.create_index(
        "uq_graph_subscriptions_connection_id_kind_resource",
        "graph_subscriptions",
        ["connection_id", "kind", "resource"],
        unique=True,
    )
    op.create_index(
        "ix_graph_subscriptions_broker_id", "graph_subscriptions", ["broker_id"]
    )

    op.create_table(
        "graph_notification_keys",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_graph_notification_keys"),
    )
    op.create_index(
        "ix_graph_notification_keys_first_seen_at",
        "graph_notification_keys",
        ["first_seen_at"],
    )

    op.create_table(
        "contact_emails",
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("contact_id", sa.String(36), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "broker_id", "email", "contact_id", name="pk_contact_emails"
        ),
    )
    op.create_index(
        "ix_contact_emails_broker_id_contact_id",
        "contact_emails",
        ["broker_id", "contact_id"],
    )

    op.create_table(
        "deal_clients",
        sa.Column("broker_id", sa.String(36), nullable=False),
        sa.Column("deal_id", sa.String(36), nullable=False),
        sa.Column("contact_id", sa.String(36), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "broker_id", "deal_id", "contact_id", name="pk_deal_clients"
        ),
    )
    op.create_index(
        "ix_deal_clients_broker_id_contact_id",
        "deal_clients",
        ["broker_id", "contact_id"],
    )

    _index_stored_snapshots()


def downgrade() -> None:
    op.drop_table("deal_clients")
    op.drop_table("contact_emails")
    op.drop_table("graph_notification_keys")
    op.drop_table("graph_subscriptions")
    _widen(entity_id=36, ordering_key=200)


def _widen(*, entity_id: int, ordering_key: int) -> None:
    with op.batch_alter_table("events") as batch:
        batch.alter_column("entity_id", type_=sa.String(entity_id), nullable=False)
    with op.batch_alter_table("snapshots") as batch:
        batch.alter_column("entity_id", type_=sa.String(entity_id), nullable=False)
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("ordering_key", type_=sa.String(ordering_key))


def _index_stored_snapshots() -> None:
    """Fill the index from the latest contact and deal snapshot of each entity.

    Written out here rather than imported, so that this migration keeps
    doing what it did when the store's code moves on.
    """
    connection = op.get_bind()
    snapshots = sa.table(
        "snapshots",
        sa.column("id", sa.BigInteger()),
        sa.column("broker_id", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("entity_id", sa.String()),
        sa.column("data", sa.Text()),
    )
    latest = (
        sa.select(sa.func.max(snapshots.c.id))
        .where(snapshots.c.subject.in_(("contact", "deal")))
        .group_by(snapshots.c.broker_id, snapshots.c.subject, snapshots.c.entity_id)
    )
    ids = list(connection.scalars(latest))
    now = utcnow()
    emails: dict[tuple[str, str, str], dict[str, Any]] = {}
    clients: dict[tuple[str, str, str], dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        rows = connection.execute(
            sa.select(
                snapshots.c.broker_id, snapshots.c.subject, snapshots.c.data
            ).where(snapshots.c.id.in_(ids[start : start + 500]))
        ).all()
        for row in rows:
            data = json.loads(row.data)
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                continue
            if row.subject == "contact":
                for email in _emails(data):
                    emails[(row.broker_id, email, data["id"])] = {
                        "broker_id": row.broker_id,
                        "email": email,
                        "contact_id": data["id"],
                    }
            else:
                is_open = _is_open(data)
                for contact_id in data.get("idClients") or []:
                    clients[(row.broker_id, data["id"], str(contact_id))] = {
                        "broker_id": row.broker_id,
                        "deal_id": data["id"],
                        "contact_id": str(contact_id),
                        "is_open": is_open,
                    }
    if emails:
        op.bulk_insert(
            sa.table(
                "contact_emails",
                sa.column("broker_id", sa.String()),
                sa.column("email", sa.String()),
                sa.column("contact_id", sa.String()),
                sa.column("updated_at", UTCDateTime()),
            ),
            [{**row, "updated_at": now} for row in emails.values()],
        )
    if clients:
        op.bulk_insert(
            sa.table(
                "deal_clients",
                sa.column("broker_id", sa.String()),
                sa.column("deal_id", sa.String()),
                sa.column("contact_id", sa.String()),
                sa.column("is_open", sa.Boolean()),
                sa.column("updated_at", UTCDateTime()),
            ),
            [{**row, "updated_at": now} for row in clients.values()],
        )


def _emails(contact: dict[str, Any]) -> set[str]:
    details = (contact.get("person") or {}).get("contact") or {}
    found = set()
    for name in ("email", "secondaryEmail"):
        value = details.get(name)
        if isinstance(value, str) and "@" in value and len(value) <= 320:
            found.add(value.strip().lower())
    return found


def _is_open(deal: dict[str, Any]) -> bool:
    return bool(
        deal.get("isActive", True)
        and not deal.get("isLost")
        and not deal.get("isSettled")
    )
