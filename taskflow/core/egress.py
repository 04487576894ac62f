"""Where the server's own outbound requests may go: public addresses only (the SSRF guard).

A project admin names a webhook's URL, and the server POSTs to it from inside the deployment.
Without a guard that URL could be `http://169.254.169.254/` (a cloud's metadata service), a
database's admin page or anything else only the server can reach, and the delivery log would
show the admin the start of the answer. So deliveries connect only to addresses that are
globally routable: the host is resolved when the request is sent, every address it resolves
to must be public, and the connection goes to the address that was checked (the name is kept
for the `Host` header and for TLS, so certificates are still checked against it). A name that
resolves to a public address for the check and to a private one a moment later (DNS
rebinding) therefore gains nothing.

`WEBHOOK_ALLOW_PRIVATE_URLS=true` lifts the guard (development, tests, a receiver inside the
network); an egress proxy (`HTTPS_PROXY`) is the other way to decide, and then it decides.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(httpx.ConnectError):
    """The URL's host is, or resolves to, an address deliveries may not reach."""


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared (CGNAT), reserved,
    documentation or multicast; an IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged
    as the IPv4 address it is."""
    address = _unmapped(address)
    return address.is_global and not address.is_multicast


def kind_of(address: IPAddress) -> str:
    """A word for why an address is refused, for the delivery log."""
    address = _unmapped(address)
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting only to addresses `allowed` accepts (see the module).

    Connections are not kept alive: a pooled connection is keyed by the address it went to,
    and two hosts sharing one address (a CDN) must not share a TLS session made for the other.
    """

    def __init__(self, allowed: Callable[[IPAddress], bool] = is_public) -> None:
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0))
        self._allowed = allowed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        address = await self._checked_address(host, request.url.port, request)
        request.url = request.url.copy_with(host=str(address))
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await super().handle_async_request(request)

    async def _checked_address(
        self, host: str, port: int | None, request: httpx.Request
    ) -> IPAddress:
        """The first address `host` resolves to, once every one of them is allowed."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await _resolve(host, port, request)
        for address in addresses:
            if not self._allowed(address):
                what = "is" if str(address) == host else f"resolves to {address},"
                raise RefusedAddress(
                    f"refused: {host} {what} a {kind_of(address)} address; deliveries go to "
                    "public addresses only (WEBHOOK_ALLOW_PRIVATE_URLS)",
                    request=request,
                )
        return addresses[0]


async def _resolve(host: str, port: int | None, request: httpx.Request) -> list[IPAddress]:
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}", request=request)
    return addresses
