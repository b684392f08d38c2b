"""The one egress policy for calls to URLs that someone outside chose (a shop's webhook).

A shop could otherwise point us at our own database port, a cloud metadata service or a
neighbour on the private network (SSRF). So a URL is checked twice:

- when it is registered (`check_url`): http or https, no user info, and a host that is not a
  forbidden address written in any of its spellings (`127.1`, `2130706433`, `0x7f000001`,
  `[::ffff:169.254.169.254]`), nor `localhost`; a name that resolves now is resolved and
  checked too;
- at every delivery (`resolve`): the name is resolved again and every address it resolves to
  must be allowed (a name re-pointed after registration, DNS rebinding, is caught here), and
  the request is then sent to the checked address itself, so a second lookup cannot swap it.

Refused: loopback, private (RFC 1918, fc00::/7), shared (100.64/10), link-local, multicast,
reserved, unspecified and any other address that is not globally routable, and IPv4 carried
inside IPv6 (mapped, 6to4, Teredo, NAT64). Loopback is allowed only with an explicit
development setting (`ALUR_EGRESS_ALLOW_LOOPBACK`), which the tests and the demo use for their
receivers on 127.0.0.1. Redirects are never followed: an answer 3xx is a failed delivery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from alur.runtime.errors import AlurError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
RESOLVE_TIMEOUT = 5.0


class EgressRefused(AlurError):
    """The URL, or an address its host resolves to, is not one we may call."""


@dataclass(frozen=True)
class Target:
    """Where a checked request goes: the URL as registered, and the address to connect to."""

    url: str
    host: str
    address: str


@dataclass(frozen=True)
class EgressPolicy:
    allow_loopback: bool = False

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's host and port, if its form and any literal address in it are allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise EgressRefused(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise EgressRefused("only http and https URLs are allowed")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise EgressRefused("a URL with user info is not allowed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise EgressRefused("the URL has no host")
        literal = ip_literal(host)
        if literal is not None:
            self.check_address(literal)
        elif host == "localhost" or host.endswith(".localhost"):
            if not self.allow_loopback:
                raise EgressRefused(f"{host} is a loopback name")
        return host, port

    def check_address(self, address: IPAddress) -> None:
        why = forbidden(address, allow_loopback=self.allow_loopback)
        if why is not None:
            raise EgressRefused(f"{address} is {why}")

    async def registrable(self, url: str) -> None:
        """Refuse a URL at registration: its form, and what its name resolves to now (a name
        that does not resolve yet is accepted; every delivery resolves it again)."""
        host, port = self.check_url(url)
        if ip_literal(host) is not None:
            return
        try:
            await self._addresses(host, port)
        except OSError:
            return

    async def resolve(self, url: str) -> Target:
        """Check the URL and resolve its host now; every address must be allowed. Raises
        EgressRefused, or OSError when the name does not resolve (try again later)."""
        host, port = self.check_url(url)
        literal = ip_literal(host)
        addresses = [literal] if literal is not None else await self._addresses(host, port)
        return Target(url, host, str(addresses[0]))

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        for address in addresses:  # one bad answer refuses them all: the OS may pick it
            try:
                self.check_address(address)
            except EgressRefused as exc:
                raise EgressRefused(f"{host} resolves to {exc}") from None
        return addresses


def ip_literal(host: str) -> IPAddress | None:
    """The address a host string spells, in any form the C resolver would read it: dotted,
    short (`127.1`), decimal, hex or octal IPv4, or IPv6 (a zone index is dropped)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def forbidden(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `address` may not be called, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if address.sixtofour is not None or address.teredo is not None or \
                any(address in net for net in _NAT64):
            return "an IPv6 address carrying an IPv4 address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    checks = (("the unspecified address", address.is_unspecified),
              ("a link-local address", address.is_link_local),
              ("a multicast address", address.is_multicast),
              ("a private address", address.is_private),
              ("a reserved address", address.is_reserved),
              ("not globally routable", not address.is_global))
    return next((why for why, applies in checks if applies), None)
