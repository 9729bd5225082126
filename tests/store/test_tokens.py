"""SalesTrekker session tokens: workers that sign in together do not collide."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.store import tokens
from brokerhooks.store.database import transaction
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker


def test_a_token_saved_while_another_is_being_saved_replaces_it(
    engine: Engine, settings: Settings
) -> None:
    broker = add_broker(engine, Vault(settings.fernet_keys))
    expires = utcnow() + timedelta(hours=1)
    failures: list[BaseException] = []

    def second_worker() -> None:
        try:
            with transaction(engine, write=True) as connection:
                tokens.save_token(connection, broker.id, "second", expires)
        except BaseException as error:
            failures.append(error)

    # The first worker's row is written but not committed when the second
    # one saves its own: on PostgreSQL the second waits for the first.
    with transaction(engine, write=True) as connection:
        tokens.save_token(connection, broker.id, "first", expires)
        other = threading.Thread(target=second_worker)
        other.start()
        time.sleep(0.3)
    other.join(timeout=10)

    assert not other.is_alive()
    assert failures == []
    with transaction(engine) as connection:
        saved = tokens.load_token(connection, broker.id)
    assert saved is not None
    assert saved[0] == "second"
