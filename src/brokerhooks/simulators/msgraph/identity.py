"""The identity provider: what msal talks to instead of login.microsoftonline.com.

Three endpoints per tenant, shaped as Entra ID's v2.0 ones:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``
- ``GET /{tenant}/oauth2/v2.0/authorize``: consents at once and sends the
  browser back to ``redirect_uri`` with ``code`` and ``state`` (a 302 for
  ``response_mode=query``, an auto-submitting form for ``form_post``)
- ``POST /{tenant}/oauth2/v2.0/token``: ``authorization_code`` (PKCE S256
  checked), ``refresh_token`` and ``client_credentials``

id_tokens are unsigned JWTs (``alg: none``): msal does not check id_token
signatures. Access and refresh tokens are opaque random strings, where Entra
ID issues JWTs; only the simulator reads them. Error codes and messages
follow Entra ID's ``AADSTS`` style; the exact numbers are GUESSes unless
marked otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from brokerhooks.simulators.msgraph.state import (
    AccessToken,
    App,
    AuthorizationCode,
    RecordedTokenRequest,
    RefreshToken,
    Tenant,
    User,
)

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
# Scopes that name the protocol, not a Graph permission.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


class TokenError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


def routes(tenant: Tenant) -> list[Route]:
    """The identity routes, bound to ``tenant``."""

    async def openid_configuration(request: Request) -> Response:
        _check_tenant(tenant, request.path_params["tenant"])
        return JSONResponse(_openid_configuration(tenant, request))

    async def authorize(request: Request) -> Response:
        _check_tenant(tenant, request.path_params["tenant"])
        with tenant.lock:
            return _authorize(tenant, dict(request.query_params))

    async def token(request: Request) -> Response:
        _check_tenant(tenant, request.path_params["tenant"])
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        with tenant.lock:
            return _token(tenant, request, form)

    return [
        Route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            openid_configuration,
            methods=["GET"],
        ),
        Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]


def _check_tenant(tenant: Tenant, name: str) -> None:
    if name not in (tenant.tenant_id, "common", "organizations"):
        # GUESS: Entra ID answers 400 with AADSTS90002 for an unknown tenant.
        raise HTTPException(
            400, f"AADSTS90002: Tenant '{name}' not found in this simulator."
        )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _openid_configuration(tenant: Tenant, request: Request) -> dict[str, object]:
    name = request.path_params["tenant"]
    base = _base(request)
    # The fields msal reads are authorization_endpoint, token_endpoint,
    # issuer and device_authorization_endpoint [code]; the rest is for looks.
    return {
        "authorization_endpoint": f"{base}/{name}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/{name}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/{name}/oauth2/v2.0/devicecode",
        "issuer": f"{base}/{tenant.tenant_id}/v2.0",
        "jwks_uri": f"{base}/{name}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "client_secret_basic",
        ],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "response_types_supported": ["code"],
        "scopes_supported": sorted(OIDC_SCOPES),
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "oid",
        ],
        "tenant_region_scope": "OC",
        "cloud_instance_name": "microsoftonline.com",
    }


# The authorization endpoint.


def _authorize(tenant: Tenant, query: Mapping[str, str]) -> Response:
    app = tenant.apps.get(query.get("client_id", ""))
    if app is None:
        # Entra ID shows an error page, never redirecting to an unknown app.
        return _error_page(
            f"AADSTS700016: Application with identifier "
            f"'{query.get('client_id', '')}' was not found in the directory."
        )
    redirect_uri = query.get("redirect_uri", "")
    if not _redirect_allowed(app, redirect_uri):
        return _error_page(
            "AADSTS50011: The redirect URI specified in the request does not "
            f"match the redirect URIs configured for the application: {redirect_uri!r}"
        )
    mode = query.get("response_mode", "query")
    state = {"state": query["state"]} if "state" in query else {}

    refusal = _refusal(tenant, query)
    if refusal is not None:
        error, description = refusal
        params = {"error": error, "error_description": description, **state}
        return _send_back(redirect_uri, mode, params)
    user = _signing_in_user(tenant, query.get("login_hint"))
    if user is None:
        return _error_page("AADSTS50020: no user can sign in to this simulator.")

    code = AuthorizationCode(
        value="sim-code-" + secrets.token_urlsafe(32),
        client_id=app.client_id,
        user_id=user.id,
        redirect_uri=redirect_uri,
        scopes=tuple(query.get("scope", "").split()),
        code_challenge=query.get("code_challenge"),
        nonce=query.get("nonce"),
        expires_at=tenant.clock() + tenant.code_lifetime,
    )
    tenant.codes[code.value] = code
    params = {"code": code.value, "session_state": secrets.token_hex(16), **state}
    if query.get("client_info") == "1":
        params["client_info"] = _client_info(tenant, user)
    return _send_back(redirect_uri, mode, params)


def _refusal(tenant: Tenant, query: Mapping[str, str]) -> tuple[str, str] | None:
    """The error and description to send back to the app, if any."""
    challenge = query.get("code_challenge")
    if query.get("response_type") != "code":
        return "unsupported_response_type", "AADSTS700054: use response_type=code."
    if challenge is None and tenant.require_pkce:
        return (
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required.",
        )
    if challenge is not None and query.get("code_challenge_method") != "S256":
        return "invalid_request", "AADSTS501491: code_challenge_method must be S256."
    if tenant.deny_consent:
        return (
            "access_denied",
            "AADSTS65004: User declined to consent to access the app.",
        )
    return None


def _redirect_allowed(app: App, redirect_uri: str) -> bool:
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return False
    return not app.redirect_uris or redirect_uri in app.redirect_uris


def _signing_in_user(tenant: Tenant, login_hint: str | None) -> User | None:
    for key in (login_hint, tenant.sign_in_as):
        user = tenant.find_user(key) if key else None
        if user is not None:
            return user
    return next(iter(tenant.users.values()), None)


def _send_back(redirect_uri: str, mode: str, params: dict[str, str]) -> Response:
    if mode == "form_post":
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(name)}" '
            f'value="{html.escape(value)}"/>'
            for name, value in params.items()
        )
        return HTMLResponse(
            "<html><head><title>Working...</title></head><body>"
            f'<form method="POST" name="hiddenform" '
            f'action="{html.escape(redirect_uri)}">{inputs}'
            "<noscript><p>Script is disabled. Click Submit to continue.</p>"
            '<input type="submit" value="Submit"/></noscript></form>'
            "<script>document.forms[0].submit();</script></body></html>"
        )
    separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return RedirectResponse(redirect_uri + separator + urlencode(params), 302)


def _error_page(message: str) -> Response:
    return HTMLResponse(
        "<html><body><h1>Sign in</h1>"
        "<p>Sorry, but we're having trouble signing you in.</p>"
        f"<p>{html.escape(message)}</p>"
        "</body></html>",
        status_code=400,
    )


# The token endpoint.


def _token(tenant: Tenant, request: Request, form: dict[str, str]) -> Response:
    grant_type = form.get("grant_type", "")
    client_id = form.get("client_id", "")
    try:
        app = _authenticate_client(tenant, request, form)
        fault = tenant.take_token_fault(grant_type)
        if fault is not None:
            raise TokenError(fault.error, fault.description, fault.status)
        if grant_type == "authorization_code":
            body = _redeem_code(tenant, request, app, form)
        elif grant_type == "refresh_token":
            body = _redeem_refresh_token(tenant, request, app, form)
        elif grant_type == "client_credentials":
            body = _client_credentials(tenant, app, form)
        else:
            raise TokenError(
                "unsupported_grant_type",
                f"AADSTS70003: The app requested an unsupported grant type "
                f"'{grant_type}'.",
            )
    except TokenError as error:
        tenant.token_requests.append(
            RecordedTokenRequest(grant_type, client_id, error.status, error.error)
        )
        return JSONResponse(
            {
                "error": error.error,
                "error_description": error.description,
                "error_codes": [_aadsts_number(error.description)],
                "timestamp": "",
                "trace_id": secrets.token_hex(16),
                "correlation_id": secrets.token_hex(16),
            },
            status_code=error.status,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )
    tenant.token_requests.append(RecordedTokenRequest(grant_type, client_id, 200, None))
    return JSONResponse(
        body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _aadsts_number(description: str) -> int:
    digits = description.removeprefix("AADSTS").split(":", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _authenticate_client(tenant: Tenant, request: Request, form: dict[str, str]) -> App:
    client_id, secret = form.get("client_id", ""), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        decoded = base64.b64decode(header[6:]).decode()
        client_id, _, secret = decoded.partition(":")
    app = tenant.apps.get(client_id)
    if app is None:
        raise TokenError(
            "unauthorized_client",
            f"AADSTS700016: Application with identifier '{client_id}' was not "
            "found in the directory.",
        )
    if secret is None or not secrets.compare_digest(secret, app.client_secret):
        # Entra ID answers a wrong secret with 401 invalid_client [doc-ish].
        raise TokenError(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret "
            "being sent in the request is the client secret value, not the "
            "client secret ID.",
            status=401,
        )
    return app


def _redeem_code(
    tenant: Tenant, request: Request, app: App, form: dict[str, str]
) -> dict[str, object]:
    code = tenant.codes.get(form.get("code", ""))
    if code is None or code.client_id != app.client_id:
        raise TokenError(
            "invalid_grant", "AADSTS9002313: Invalid request. The code is unknown."
        )
    if code.redeemed:
        raise TokenError(
            "invalid_grant",
            "AADSTS54005: OAuth2 Authorization code was already redeemed.",
        )
    if code.expires_at < tenant.clock():
        raise TokenError(
            "invalid_grant", "AADSTS70008: The authorization code expired."
        )
    if form.get("redirect_uri") != code.redirect_uri:
        raise TokenError(
            "invalid_grant",
            "AADSTS500112: The reply address does not match the one used to "
            "request the authorization code.",
        )
    if code.code_challenge is not None:
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(
            _s256(verifier), code.code_challenge
        ):
            raise TokenError(
                "invalid_grant",
                "AADSTS501481: The Code_Verifier does not match the "
                "code_challenge supplied in the authorization request.",
            )
    code.redeemed = True
    user = tenant.users[code.user_id]
    return _user_tokens(tenant, request, app, user, code.scopes, nonce=code.nonce)


def _redeem_refresh_token(
    tenant: Tenant, request: Request, app: App, form: dict[str, str]
) -> dict[str, object]:
    token = tenant.refresh_tokens.get(form.get("refresh_token", ""))
    if token is None or token.client_id != app.client_id:
        raise TokenError(
            "invalid_grant",
            "AADSTS9002313: Invalid request. The refresh token is malformed "
            "or unknown.",
        )
    if token.revoked:
        raise TokenError(
            "invalid_grant",
            "AADSTS50173: The provided grant has expired due to it being "
            "revoked, a fresh auth token is needed.",
        )
    if token.expires_at < tenant.clock():
        raise TokenError(
            "invalid_grant",
            "AADSTS700082: The refresh token has expired due to inactivity.",
        )
    scopes = tuple(form.get("scope", "").split()) or token.scopes
    user = tenant.users[token.user_id]
    # GUESS: the old refresh token stays valid after rotation, as Entra ID's
    # do until they expire; a revocation ends all of them.
    return _user_tokens(tenant, request, app, user, scopes, nonce=None)


def _client_credentials(
    tenant: Tenant, app: App, form: dict[str, str]
) -> dict[str, object]:
    scope = form.get("scope", "")
    if not scope.endswith("/.default") or " " in scope.strip():
        raise TokenError(
            "invalid_scope",
            f"AADSTS1002012: The provided value for scope {scope} is not "
            "valid. Client credential flows must have a scope value with "
            "/.default suffixed to the resource identifier.",
        )
    access = issue_access_token(tenant, app, None, (scope,))
    return {
        "token_type": "Bearer",
        "expires_in": tenant.access_token_lifetime,
        "ext_expires_in": tenant.access_token_lifetime,
        "access_token": access.value,
    }


def _user_tokens(
    tenant: Tenant,
    request: Request,
    app: App,
    user: User,
    scopes: tuple[str, ...],
    *,
    nonce: str | None,
) -> dict[str, object]:
    granted = tuple(scope for scope in scopes if scope != "offline_access")
    access = issue_access_token(tenant, app, user, granted)
    body: dict[str, object] = {
        "token_type": "Bearer",
        "scope": " ".join(granted),
        "expires_in": tenant.access_token_lifetime,
        "ext_expires_in": tenant.access_token_lifetime,
        "access_token": access.value,
        "client_info": _client_info(tenant, user),
    }
    if "offline_access" in scopes:
        refresh = RefreshToken(
            value="sim-rt-" + secrets.token_urlsafe(32),
            client_id=app.client_id,
            user_id=user.id,
            scopes=scopes,
            expires_at=tenant.clock() + tenant.refresh_token_lifetime,
        )
        tenant.refresh_tokens[refresh.value] = refresh
        body["refresh_token"] = refresh.value
    if "openid" in scopes:
        body["id_token"] = _id_token(tenant, request, app, user, nonce)
    return body


def issue_access_token(
    tenant: Tenant, app: App, user: User | None, scopes: tuple[str, ...]
) -> AccessToken:
    token = AccessToken(
        value="sim-at-" + secrets.token_urlsafe(32),
        client_id=app.client_id,
        user_id=user.id if user else None,
        expires_at=tenant.clock() + tenant.access_token_lifetime,
        scopes=scopes,
    )
    tenant.access_tokens[token.value] = token
    return token


def _id_token(
    tenant: Tenant, request: Request, app: App, user: User, nonce: str | None
) -> str:
    now = int(tenant.clock())
    claims: dict[str, object] = {
        "aud": app.client_id,
        "iss": f"{_base(request)}/{tenant.tenant_id}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "name": user.display_name,
        "oid": user.id,
        "preferred_username": user.upn,
        "sub": hashlib.sha256(f"{user.id}:{app.client_id}".encode()).hexdigest(),
        "tid": tenant.tenant_id,
        "ver": "2.0",
    }
    if nonce is not None:
        # msal puts the SHA-256 of its nonce in the authorize URL and expects
        # that value back [code].
        claims["nonce"] = nonce
    header = {"typ": "JWT", "alg": "none"}
    return f"{_b64url_json(header)}.{_b64url_json(claims)}."


def _client_info(tenant: Tenant, user: User) -> str:
    return _b64url_json({"uid": user.id, "utid": tenant.tenant_id})


def _b64url_json(value: object) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
