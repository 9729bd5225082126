"""Tokens for Microsoft Graph, with msal, per stored connection.

Delegated connections sign a person in with the authorization code flow and
PKCE: ``begin_sign_in`` stores msal's flow (encrypted) and gives the link;
``complete_sign_in`` takes what the browser brings back to the callback and
stores msal's token cache, encrypted. Later, ``ConnectionTokens`` loads the
cache before each use and asks msal for a token silently, which refreshes it
when it is near expiry; a changed cache is saved again. A refresh refused
with ``invalid_grant`` marks the connection ``needs_reconnect`` and raises
ReconnectRequired, whose message says what to run.

App-only connections use client credentials and act on the stored mailbox.

How msal reaches an identity provider other than Microsoft's (the
simulator): msal accepts only ``https`` authorities, so the simulator is
served over TLS with a certificate from a throwaway CA
(``simulators.msgraph.make_loopback_certificates``) and the process trusts
that CA through ``REQUESTS_CA_BUNDLE``, which requests (msal's HTTP client)
reads. No code here changes for it: msal's own HTTP code runs, and an
authority outside Microsoft's well-known hosts only turns off instance
discovery (which would ask login.microsoftonline.com about the host).
``http_client`` can still be given to route msal through something else.

msal's calls block; call these functions from a thread (the Graph client's
token provider does).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import msal  # type: ignore[import-untyped]
import structlog
from msal.authority import (  # type: ignore[import-untyped]
    WELL_KNOWN_AUTHORITY_HOSTS,
)
from sqlalchemy import Engine

from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.errors import ReconnectRequired, SignInFailed
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import connections as store
from brokerhooks.store.connections import M365ConnectionRecord, M365Secrets
from brokerhooks.store.database import transaction
from brokerhooks.store.models import (
    M365_CONNECTED,
    M365_DELEGATED,
    M365_NEEDS_RECONNECT,
)
from brokerhooks.store.types import utcnow

log = structlog.get_logger("brokerhooks.connectors.msgraph")

# What a delegated connection may do; msal adds openid, profile and
# offline_access (the refresh token).
DELEGATED_SCOPES = (
    "Tasks.ReadWrite",
    "Mail.ReadWrite",
    "Mail.Send",
    "Calendars.ReadWrite",
    "Files.ReadWrite",
    "User.Read",
)
APP_ONLY_SCOPES = ("https://graph.microsoft.com/.default",)
CALLBACK_PATH = "/connections/m365/callback"
SIGN_IN_LIFETIME = timedelta(minutes=30)
# msal refreshes an access token with less than this many seconds left.
EXPIRY_MARGIN = 300
# Errors after which only a person can help: sign in again, consent, MFA.
_SIGN_IN_AGAIN = frozenset(
    {"invalid_grant", "interaction_required", "consent_required", "login_required"}
)
_CLIENT_REJECTED = frozenset({"invalid_client", "unauthorized_client"})
# What msal raises when the sign-in service cannot be reached or answers
# 5xx: requests' errors (OSErrors) and msal's MsalServiceError.
_UNREACHABLE = (OSError, msal.exceptions.MsalServiceError)


def build_application(
    record: M365ConnectionRecord,
    client_secret: Secret,
    cache: msal.SerializableTokenCache,
    *,
    http_client: Any = None,
) -> msal.ConfidentialClientApplication:
    """msal's app for a connection; fetches the authority's configuration.

    PermanentError if the authority is not usable, TransientError if it
    cannot be reached.
    """
    authority = f"{record.authority_url.rstrip('/')}/{record.tenant_id}"
    known = urlsplit(authority).hostname in WELL_KNOWN_AUTHORITY_HOSTS
    try:
        return msal.ConfidentialClientApplication(
            record.client_id,
            client_credential=client_secret.reveal(),
            authority=authority,
            token_cache=cache,
            http_client=http_client,
            instance_discovery=None if known else False,
        )
    except ValueError as error:
        raise PermanentError(
            f"Microsoft 365 connection {record.name!r}: the authority {authority} "
            f"cannot be used ({_first_line(str(error))}); check --authority-url "
            "and --tenant"
        ) from None
    except _UNREACHABLE as error:
        raise TransientError(
            f"the Microsoft sign-in service at {authority} could not be reached "
            f"({type(error).__name__})"
        ) from None


# Delegated sign-in.


def begin_sign_in(
    engine: Engine,
    vault: Vault,
    connection_id: str,
    *,
    redirect_uri: str,
    http_client: Any = None,
) -> str:
    """Start a delegated sign-in; the link to open in a browser.

    The flow (with its PKCE verifier) is kept encrypted until the callback.
    """
    record, secrets = _load(engine, connection_id)
    if record.kind != M365_DELEGATED:
        raise PermanentError(
            f"Microsoft 365 connection {record.name!r} is app-only: nobody signs in"
        )
    app = build_application(
        record,
        vault.decrypt(secrets.client_secret_encrypted),
        msal.SerializableTokenCache(),
        http_client=http_client,
    )
    try:
        # form_post keeps the code out of URLs and logs (RFC 9700 4.3.1).
        flow = app.initiate_auth_code_flow(
            list(DELEGATED_SCOPES),
            redirect_uri=redirect_uri,
            response_mode="form_post",
            login_hint=record.mailbox,
        )
    finally:
        app.http_client.close()

    with transaction(engine, write=True) as connection:
        store.begin_m365_sign_in(
            connection,
            record.id,
            state=flow["state"],
            auth_flow_encrypted=vault.encrypt(Secret(json.dumps(flow))),
        )
    log.info("m365_sign_in_started", connection=record.name, broker=record.broker_name)
    return str(flow["auth_uri"])


def complete_sign_in(
    engine: Engine,
    vault: Vault,
    auth_response: Mapping[str, str],
    *,
    http_client: Any = None,
) -> M365ConnectionRecord:
    """Finish a sign-in from what the browser brought back; SignInFailed if not."""
    pending = _pending_sign_in(engine, auth_response.get("state"))
    record = pending.connection
    if "error" in auth_response:
        reason = (
            f"Microsoft refused the sign-in: {auth_response['error']}: "
            f"{_first_line(auth_response.get('error_description', ''))}"
        )
        _set_last_error(engine, record, reason)
        raise SignInFailed(f"{reason}. {_connect_again(record)}")

    flow = json.loads(vault.decrypt(pending.auth_flow_encrypted).reveal())
    cache = msal.SerializableTokenCache()
    result = _redeem(engine, vault, record, flow, auth_response, cache, http_client)
    if "error" in result:
        reason = f"Microsoft refused the sign-in code: {_error_text(result)}"
        _set_last_error(engine, record, reason)
        raise SignInFailed(f"{reason}. {_connect_again(record)}")

    mailbox = result.get("id_token_claims", {}).get("preferred_username")
    with transaction(engine, write=True) as connection:
        store.complete_m365_sign_in(
            connection,
            record.id,
            token_cache_encrypted=vault.encrypt(Secret(cache.serialize())),
            mailbox=mailbox or record.mailbox,
        )
        record = store.get_m365_connection_by_id(connection, record.id)
    log.info("m365_signed_in", connection=record.name, broker=record.broker_name)
    return record


def _redeem(
    engine: Engine,
    vault: Vault,
    record: M365ConnectionRecord,
    flow: dict[str, Any],
    auth_response: Mapping[str, str],
    cache: msal.SerializableTokenCache,
    http_client: Any,
) -> dict[str, Any]:
    """msal redeems the code (with the PKCE verifier) into ``cache``."""
    secrets = _load(engine, record.id)[1]
    app = build_application(
        record,
        vault.decrypt(secrets.client_secret_encrypted),
        cache,
        http_client=http_client,
    )
    try:
        return dict(app.acquire_token_by_auth_code_flow(flow, dict(auth_response)))
    except ValueError:
        # msal checks state and nonce; a mismatch means a forged or stale reply.
        raise SignInFailed(
            "the sign-in reply does not belong to this sign-in. "
            + _connect_again(record)
        ) from None
    except _UNREACHABLE as error:
        raise _unreachable(error) from None
    finally:
        app.http_client.close()


def _pending_sign_in(engine: Engine, state: str | None) -> store.PendingSignIn:
    pending = None
    if state:
        with transaction(engine) as connection:
            pending = store.find_m365_sign_in(connection, state)
    if pending is None:
        raise SignInFailed(
            "this sign-in is unknown or already finished; run "
            "`brokerhooks connections m365 connect NAME --broker BROKER` for a new link"
        )
    if utcnow() - pending.started_at > SIGN_IN_LIFETIME:
        raise SignInFailed(
            f"this sign-in link has expired. {_connect_again(pending.connection)}"
        )
    return pending


def _connect_again(record: M365ConnectionRecord) -> str:
    return (
        f"Run `brokerhooks connections m365 connect {record.name} "
        f"--broker {record.broker_name}` for a new sign-in link"
    )


# Tokens on use.


class ConnectionTokens:
    """Access tokens of one stored connection: the Graph client's provider.

    Keeps one msal app (so the authority's configuration is fetched once),
    and, when its last token nears expiry, loads the stored cache into it
    before asking msal, so that every process sees the tokens any other
    process refreshed.
    """

    def __init__(
        self,
        engine: Engine,
        vault: Vault,
        connection_id: str,
        *,
        http_client: Any = None,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._connection_id = connection_id
        self._http_client = http_client
        self._lock = threading.Lock()
        self._cache = msal.SerializableTokenCache()
        self._app: Any = None
        self._app_key: tuple[str, ...] = ()
        self._token: tuple[Secret, float] | None = None

    async def __call__(self, *, force_refresh: bool = False) -> Secret:
        return await asyncio.to_thread(self.access_token, force_refresh=force_refresh)

    def access_token(
        self, *, force_refresh: bool = False, check_status: bool = True
    ) -> Secret:
        """A token for Graph. ReconnectRequired when a person must act."""
        with self._lock:
            if not force_refresh and self._token is not None:
                token, good_until = self._token
                if time.monotonic() < good_until:
                    return token
            self._token = None
            record, secrets = _load(self._engine, self._connection_id)
            if check_status and record.status == M365_NEEDS_RECONNECT:
                raise _reconnect(record, record.last_error or "it was disconnected")
            app = self._application(record, secrets)
            blob = secrets.token_cache_encrypted
            self._cache.deserialize(
                self._vault.decrypt(blob).reveal() if blob else None
            )

            if record.kind == M365_DELEGATED:
                result = self._delegated(app, record, force_refresh)
            else:
                result = self._app_only(app, force_refresh)

            if "access_token" not in result:
                self._refused(record, result)
            if self._cache.has_state_changed:
                self._save_cache(record)
            token = Secret(result["access_token"])
            # Reused without the store while msal would serve it from its
            # cache too: until five minutes before it expires.
            lifetime = float(result.get("expires_in", 0)) - EXPIRY_MARGIN
            self._token = (token, time.monotonic() + lifetime)
            return token

    def close(self) -> None:
        """Close msal's HTTP session."""
        with self._lock:
            if self._app is not None:
                self._app.http_client.close()
                self._app = None

    def _application(self, record: M365ConnectionRecord, secrets: M365Secrets) -> Any:
        key = (
            record.client_id,
            record.tenant_id,
            record.authority_url,
            secrets.client_secret_encrypted,
        )
        if self._app is None or key != self._app_key:
            if self._app is not None:
                self._app.http_client.close()
            self._app = build_application(
                record,
                self._vault.decrypt(secrets.client_secret_encrypted),
                self._cache,
                http_client=self._http_client,
            )
            self._app_key = key
        return self._app

    def _delegated(
        self, app: Any, record: M365ConnectionRecord, force_refresh: bool
    ) -> dict[str, Any]:
        accounts = app.get_accounts(username=record.mailbox) if record.mailbox else []
        accounts = accounts or app.get_accounts()
        if not accounts:
            self._needs_reconnect(record, "no signed-in account is stored")
        try:
            result = app.acquire_token_silent_with_error(
                list(DELEGATED_SCOPES), account=accounts[0], force_refresh=force_refresh
            )
        except _UNREACHABLE as error:
            raise _unreachable(error) from None
        if result is None:
            self._needs_reconnect(record, "no refresh token is stored")
        return dict(result)

    def _app_only(self, app: Any, force_refresh: bool) -> dict[str, Any]:
        if force_refresh:
            app.remove_tokens_for_client()
        try:
            return dict(app.acquire_token_for_client(list(APP_ONLY_SCOPES)))
        except _UNREACHABLE as error:
            raise _unreachable(error) from None

    def _refused(
        self, record: M365ConnectionRecord, result: Mapping[str, Any]
    ) -> NoReturn:
        error = str(result.get("error", ""))
        if error in _SIGN_IN_AGAIN:
            self._needs_reconnect(
                record, f"Microsoft refused the refresh: {_error_text(result)}"
            )
        if error in _CLIENT_REJECTED:
            self._needs_reconnect(
                record,
                f"Microsoft refused the app's credentials: {_error_text(result)}",
            )
        raise TransientError(
            f"Microsoft sign-in service refused a token for {record.name!r}: "
            f"{_error_text(result)}"
        )

    def _needs_reconnect(self, record: M365ConnectionRecord, reason: str) -> NoReturn:
        with transaction(self._engine, write=True) as connection:
            store.mark_m365_needs_reconnect(connection, record.id, reason=reason)
        log.warning(
            "m365_needs_reconnect",
            connection=record.name,
            broker=record.broker_name,
            reason=reason,
        )
        raise _reconnect(record, reason)

    def _save_cache(self, record: M365ConnectionRecord) -> None:
        blob = self._vault.encrypt(Secret(self._cache.serialize()))
        with transaction(self._engine, write=True) as connection:
            store.save_m365_token_cache(
                connection, record.id, token_cache_encrypted=blob
            )
        self._cache.has_state_changed = False


def verify_app_only(
    engine: Engine, vault: Vault, connection_id: str, *, http_client: Any = None
) -> M365ConnectionRecord:
    """Get an app-only token now; the connection is then ``connected``."""
    tokens = ConnectionTokens(engine, vault, connection_id, http_client=http_client)
    try:
        tokens.access_token(force_refresh=True, check_status=False)
    finally:
        tokens.close()
    with transaction(engine, write=True) as connection:
        store.mark_m365_connected(connection, connection_id)
        return store.get_m365_connection_by_id(connection, connection_id)


class TokenProviders:
    """The token providers of a worker's connections, kept between actions.

    Building a provider builds msal's application, which asks the sign-in
    service for the authority's configuration; one per action would add
    that round trip to every Graph action. A provider is kept only while
    its connection is connected and unchanged: any change to the stored
    connection (a new sign-in, a new secret, a disconnect, a refreshed
    token cache) moves its ``updated_at``, and the next action gets a new
    provider.
    """

    def __init__(self, engine: Engine, vault: Vault, *, http_client: Any = None):
        self._engine = engine
        self._vault = vault
        self._http_client = http_client
        self._kept: dict[str, tuple[datetime, ConnectionTokens]] = {}

    def get(
        self, record: M365ConnectionRecord
    ) -> tuple[ConnectionTokens, bool, ConnectionTokens | None]:
        """A provider for ``record``; whether it is kept (the caller must not
        close it); and the provider it replaces, for the caller to close (an
        action that still holds it may be in the middle of a token request).
        """
        kept = self._kept.pop(record.id, None)
        if kept is not None and kept[0] == record.updated_at:
            self._kept[record.id] = kept
            return kept[1], True, None
        retired = kept[1] if kept is not None else None
        tokens = ConnectionTokens(
            self._engine, self._vault, record.id, http_client=self._http_client
        )
        if record.status != M365_CONNECTED:
            return tokens, False, retired
        self._kept[record.id] = (record.updated_at, tokens)
        return tokens, True, retired

    def close(self) -> None:
        kept, self._kept = self._kept, {}
        for _, tokens in kept.values():
            tokens.close()


@asynccontextmanager
async def graph_client(
    engine: Engine,
    vault: Vault,
    connection_id: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    http_client: Any = None,
    providers: TokenProviders | None = None,
    **options: Any,
) -> AsyncIterator[GraphClient]:
    """A GraphClient acting for a stored connection's mailbox.

    With ``providers``, the connection's token provider is taken from (and
    left in) them; otherwise one is made for this client alone.
    """
    record = (await asyncio.to_thread(_load, engine, connection_id))[0]
    if record.mailbox is None:
        raise _reconnect(record, "nobody has signed in yet")
    if providers is not None:
        tokens, kept, retired = providers.get(record)
        if retired is not None:
            await asyncio.to_thread(retired.close)
    else:
        tokens = ConnectionTokens(engine, vault, connection_id, http_client=http_client)
        kept = False
    try:
        async with GraphClient(
            token_provider=tokens,
            mailbox=record.mailbox,
            app_only=record.kind != M365_DELEGATED,
            graph_url=record.graph_url,
            transport=transport,
            **options,
        ) as client:
            yield client
    finally:
        if not kept:
            await asyncio.to_thread(tokens.close)


# Shared.


def _load(
    engine: Engine, connection_id: str
) -> tuple[M365ConnectionRecord, M365Secrets]:
    with transaction(engine) as connection:
        return (
            store.get_m365_connection_by_id(connection, connection_id),
            store.get_m365_secrets(connection, connection_id),
        )


def _set_last_error(engine: Engine, record: M365ConnectionRecord, reason: str) -> None:
    with transaction(engine, write=True) as connection:
        store.set_m365_last_error(connection, record.id, reason=reason)
    log.warning(
        "m365_sign_in_failed",
        connection=record.name,
        broker=record.broker_name,
        reason=reason,
    )


def _reconnect(record: M365ConnectionRecord, reason: str) -> ReconnectRequired:
    if record.kind == M365_DELEGATED:
        fix = (
            f"Run `brokerhooks connections m365 connect {record.name} --broker "
            f"{record.broker_name}` and sign in again."
        )
    else:
        fix = (
            "Check the app registration in Entra ID; set a new client secret with "
            f"`brokerhooks connections m365 set-secret {record.name} --broker "
            f"{record.broker_name}`, then run `brokerhooks connections m365 connect "
            f"{record.name} --broker {record.broker_name}`."
        )
    return ReconnectRequired(
        connection=record.name, broker=record.broker_name, reason=reason, fix=fix
    )


def _unreachable(error: Exception) -> TransientError:
    return TransientError(
        f"the Microsoft sign-in service could not be reached ({type(error).__name__})"
    )


def _error_text(result: Mapping[str, Any]) -> str:
    description = _first_line(str(result.get("error_description", "")))
    return (
        f"{result.get('error')}: {description}"
        if description
        else str(result.get("error"))
    )


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]
