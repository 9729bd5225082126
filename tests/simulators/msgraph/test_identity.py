"""The simulated identity provider, spoken to as msal would, by hand."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.simulators.msgraph.conftest import (
    ANN,
    BASE,
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
)

pytestmark = pytest.mark.anyio

REDIRECT = "https://brokerhooks.test/connections/m365/callback"
VERIFIER = "a-pkce-verifier-that-is-long-enough-0123456789-abcdefghij"


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def authorize(
    http: httpx.AsyncClient, *, drop: tuple[str, ...] = (), **overrides: str
) -> httpx.Response:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "Tasks.ReadWrite offline_access openid profile",
        "state": "state-123",
        "nonce": "hashed-nonce",
        "code_challenge": challenge(VERIFIER),
        "code_challenge_method": "S256",
        **overrides,
    }
    for name in drop:
        del params[name]
    return await http.get(f"/{TENANT}/oauth2/v2.0/authorize", params=params)


async def code_from_redirect(http: httpx.AsyncClient) -> str:
    response = await authorize(http)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["state"] == ["state-123"]
    return query["code"][0]


async def token(http: httpx.AsyncClient, **form: str) -> httpx.Response:
    data = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    return await http.post(f"/{TENANT}/oauth2/v2.0/token", data=data)


async def test_openid_configuration_points_at_this_server(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")

    config = response.json()
    assert config["authorization_endpoint"] == (
        f"{BASE}/{TENANT}/oauth2/v2.0/authorize"
    )
    assert config["token_endpoint"] == f"{BASE}/{TENANT}/oauth2/v2.0/token"
    assert config["issuer"] == f"{BASE}/{TENANT}/v2.0"


async def test_unknown_tenant_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.get("/other-tenant/v2.0/.well-known/openid-configuration")

    assert response.status_code == 400


async def test_authorize_form_post_answers_an_auto_submitting_form(
    http: httpx.AsyncClient,
) -> None:
    response = await authorize(http, response_mode="form_post")

    assert response.status_code == 200
    assert f'action="{REDIRECT}"' in response.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', response.text))
    assert fields["state"] == "state-123"
    assert fields["code"].startswith("sim-code-")


@pytest.mark.parametrize(
    ("drop", "overrides", "error"),
    [
        (("code_challenge", "code_challenge_method"), {}, "invalid_request"),
        ((), {"code_challenge_method": "plain"}, "invalid_request"),
        ((), {"response_type": "token"}, "unsupported_response_type"),
    ],
    ids=["no-pkce", "plain-pkce", "implicit"],
)
async def test_authorize_sends_errors_back_to_the_app(
    http: httpx.AsyncClient,
    drop: tuple[str, ...],
    overrides: dict[str, str],
    error: str,
) -> None:
    response = await authorize(http, drop=drop, **overrides)

    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == [error]
    assert query["state"] == ["state-123"]


async def test_authorize_refuses_an_unknown_app_without_redirecting(
    http: httpx.AsyncClient,
) -> None:
    response = await authorize(http, client_id="not-registered")

    assert response.status_code == 400
    assert "AADSTS700016" in response.text


async def test_denied_consent_goes_back_as_access_denied(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient
) -> None:
    sim.deny_consent = True

    response = await authorize(http)

    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["state-123"]


async def test_code_redeems_once_with_the_right_verifier(
    http: httpx.AsyncClient,
) -> None:
    code = await code_from_redirect(http)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "scope": "Tasks.ReadWrite offline_access openid profile",
    }

    first = await token(http, **form)
    second = await token(http, **form)

    body = first.json()
    assert first.status_code == 200
    assert body["access_token"]
    assert body["refresh_token"]
    id_claims = claims(body["id_token"])
    assert id_claims["preferred_username"] == ANN
    assert id_claims["aud"] == CLIENT_ID
    assert id_claims["nonce"] == "hashed-nonce"
    assert claims("x." + body["client_info"] + ".")["utid"] == TENANT
    assert second.status_code == 400
    assert "AADSTS54005" in second.json()["error_description"]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("code_verifier", "a-different-verifier-0123456789-0123456789-abc", "501481"),
        ("code_verifier", "", "501481"),
        ("redirect_uri", "https://elsewhere.test/cb", "500112"),
    ],
    ids=["wrong-verifier", "no-verifier", "other-redirect"],
)
async def test_code_redemption_checks_pkce_and_redirect(
    http: httpx.AsyncClient, field: str, value: str, needle: str
) -> None:
    code = await code_from_redirect(http)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        field: value,
    }

    response = await token(http, **form)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert needle in response.json()["error_description"]


async def test_wrong_client_secret_is_invalid_client(http: httpx.AsyncClient) -> None:
    response = await token(
        http,
        grant_type="client_credentials",
        scope="https://graph.microsoft.com/.default",
        client_secret="wrong",
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_client_credentials_need_a_default_scope(
    http: httpx.AsyncClient,
) -> None:
    good = await token(
        http,
        grant_type="client_credentials",
        scope="https://graph.microsoft.com/.default",
    )
    bad = await token(http, grant_type="client_credentials", scope="Mail.Send")

    assert good.status_code == 200
    assert "refresh_token" not in good.json()
    assert bad.json()["error"] == "invalid_scope"


async def refresh_token(http: httpx.AsyncClient) -> str:
    code = await code_from_redirect(http)
    response = await token(
        http,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=VERIFIER,
        scope="Tasks.ReadWrite offline_access openid profile",
    )
    value: str = response.json()["refresh_token"]
    return value


async def test_refresh_token_gives_new_tokens_until_revoked(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient
) -> None:
    refresh = await refresh_token(http)

    renewed = await token(http, grant_type="refresh_token", refresh_token=refresh)
    assert sim.revoke_refresh_tokens(ANN) == 2
    refused = await token(http, grant_type="refresh_token", refresh_token=refresh)

    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != refresh
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "AADSTS50173" in refused.json()["error_description"]


async def test_injected_token_fault_applies_to_its_grant_only(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient
) -> None:
    refresh = await refresh_token(http)
    sim.fail_token_requests(grant_type="refresh_token", times=1)

    refused = await token(http, grant_type="refresh_token", refresh_token=refresh)
    app_only = await token(
        http,
        grant_type="client_credentials",
        scope="https://graph.microsoft.com/.default",
    )
    renewed = await token(http, grant_type="refresh_token", refresh_token=refresh)

    assert refused.json()["error"] == "invalid_grant"
    assert app_only.status_code == 200
    assert renewed.status_code == 200
    assert [(r.grant_type, r.status) for r in sim.token_requests][-3:] == [
        ("refresh_token", 400),
        ("client_credentials", 200),
        ("refresh_token", 200),
    ]
