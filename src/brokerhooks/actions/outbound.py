"""Outbound HTTP of actions: where a rule may send requests, and how answers read.

A rule writer chooses the URL, and the request leaves from the brokerhooks
server: without a guard, a rule could reach the server's own admin ports,
the cloud metadata service or the office network. So, unless the setting
``http_allow_private`` is on, every address the host resolves to must be
public: private, loopback, link-local, shared (CGNAT), multicast, reserved
and unspecified addresses are refused, IPv4-mapped IPv6 included.

The address actually connected to is checked again before an answer is
read. A DNS answer that changes between the check and the connection (DNS
rebinding) can then deliver a request but never read the reply. Behind an
outbound proxy on the private network every connection goes to the proxy,
and this second check refuses it: such a server turns on
``http_allow_private`` and leaves the filtering to the proxy.

URLs may carry credentials in their path or query (chat webhooks do), so
messages name only the scheme, host and port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from brokerhooks.actions.support import excerpt, retry_after
from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError

# Answers worth trying again: the receiver said so (429), or was unwell.
RETRY_STATUSES = frozenset({408, 425, 429})


def allow_private(settings: Settings) -> bool:
    return bool(getattr(settings, "http_allow_private", False))


def origin(url: str) -> str:
    """``https://host:port`` of a URL: what messages may show of it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{_port(url)}" if _port(url) else ""
    return f"{parts.scheme}://{host}{port}"


def _port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


async def check_destination(url: str, settings: Settings) -> None:
    """Refuse a URL that is not http(s), or whose host is not public.

    PermanentError for a refused destination, TransientError when the
    host's name cannot be resolved now.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError(
            f"{origin(url)!r} is not an http or https URL; write a full URL, "
            "e.g. https://example.com/hook"
        )
    if allow_private(settings):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise PermanentError(
            f"{origin(url)!r} has a port that is not a number"
        ) from None
    try:
        found = await asyncio.to_thread(
            socket.getaddrinfo, parts.hostname, port, type=socket.SOCK_STREAM
        )
    except UnicodeError:
        raise PermanentError(f"{origin(url)!r} is not a valid host name") from None
    except socket.gaierror as error:
        raise TransientError(
            f"the host of {origin(url)} could not be resolved ({error})"
        ) from None
    for *_, address in found:
        if not is_public(str(address[0])):
            raise PermanentError(
                f"{origin(url)} resolves to {address[0]}, a private, loopback, "
                "link-local or otherwise non-public address, which rules may not "
                "reach; use a public address, or turn on "
                "BROKERHOOKS_HTTP_ALLOW_PRIVATE if the server may call its own "
                "network"
            )


def is_public(address: str) -> bool:
    """Whether an IP address (v4, v6 or v4-mapped v6) is a public unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_peer(url: str, response: httpx.Response, settings: Settings) -> None:
    """Refuse to read an answer that came from a non-public address after all."""
    if allow_private(settings):
        return
    stream: Any = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer and not is_public(str(peer[0])):
        raise PermanentError(
            f"{origin(url)} was reached at {peer[0]}, which is not a public "
            "address: its DNS answer changed after the check, or an outbound "
            "proxy relays the request; behind a proxy, turn on "
            "BROKERHOOKS_HTTP_ALLOW_PRIVATE and let the proxy decide what may be "
            "reached"
        )


async def refuse_failure(url: str, response: httpx.Response, what: str) -> None:
    """Raise for an answer other than 2xx; ``what`` names the request."""
    status = response.status_code
    if response.is_success:
        return
    if response.is_redirect:
        raise PermanentError(
            f"{what} to {origin(url)} answered {status}, a redirect; brokerhooks "
            "does not follow redirects: write the URL it points to in the rule"
        )
    body = await read_some(response, 2048)
    said = excerpt(body.decode("utf-8", "replace"))
    message = f"{what} to {origin(url)} answered {status}" + (
        f": {said}" if said else ""
    )
    if status >= 500 or status in RETRY_STATUSES:
        raise TransientError(message, retry_after=retry_after(response))
    raise PermanentError(message)


async def read_some(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of a streamed body."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def timeout(settings: Settings) -> httpx.Timeout:
    """The action timeout (``action_timeout_seconds``, else 30 s)."""
    seconds = float(getattr(settings, "action_timeout_seconds", 30.0))
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))
