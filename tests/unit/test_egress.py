"""The egress policy for shop-chosen URLs: every spelling of an internal address is refused,
at registration and after DNS resolution at delivery."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from alur.runtime.egress import EgressPolicy, EgressRefused, ip_literal

# Each one a way to reach something inside: metadata service, private networks, our own ports.
REFUSED = [
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/", "http://172.16.3.4/",
    "http://192.168.1.1/", "http://127.0.0.1:15432/", "http://127.0.0.1:8090/v1/charges",
    "http://localhost/", "http://LOCALHOST./", "http://a.localhost/", "http://0.0.0.0/",
    "http://[::1]/", "http://[::]/", "http://2130706433/", "http://0x7f000001/",
    "http://0177.0.0.1/", "http://127.1/", "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:127.0.0.1]/", "http://user@127.0.0.1/", "http://user:pw@shop.example/",
    "http://100.64.0.1/", "http://224.0.0.251/", "http://[ff02::1]/", "http://[fe80::1]/",
    "http://[fc00::1]/", "http://240.0.0.1/", "http://255.255.255.255/",
    "http://[2002:7f00:1::]/", "http://[64:ff9b::a9fe:a9fe]/", "ftp://93.184.216.34/",
    "file:///etc/passwd", "http:///nohost", "http://[not-an-ip/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_addresses_in_every_spelling_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().check_url(url)


@pytest.mark.parametrize("url", ["https://shop.example/hooks", "http://93.184.216.34:8080/x",
                                 "https://[2606:2800:220:1:248:1893:25c8:1946]/hook"])
def test_public_addresses_and_names_pass_the_form_check(url: str) -> None:
    EgressPolicy().check_url(url)


def test_loopback_only_with_the_development_setting_and_never_private_or_mapped() -> None:
    dev = EgressPolicy(allow_loopback=True)
    for url in ("http://127.0.0.1:9999/", "http://localhost:9999/", "http://[::1]/"):
        dev.check_url(url)
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/",
                "http://user@127.0.0.1/"):
        with pytest.raises(EgressRefused):
            dev.check_url(url)


def test_legacy_ipv4_spellings_are_read_as_the_resolver_reads_them() -> None:
    assert str(ip_literal("2130706433")) == str(ip_literal("0x7f000001")) == "127.0.0.1"
    assert str(ip_literal("0177.0.0.1")) == str(ip_literal("127.1")) == "127.0.0.1"
    assert ip_literal("shop.example") is None


class FakeResolver:
    """getaddrinfo answering from a table, which a test can change between calls."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def __call__(self, host: str, port: int, **_: Any) -> list[Any]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in self.table[host]]


async def test_a_name_re_pointed_inward_after_registration_is_refused_at_delivery(
        monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = FakeResolver({"hooks.shop.example": ["93.184.216.34"]})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    policy = EgressPolicy()
    url = "https://hooks.shop.example/alur"
    await policy.registrable(url)
    target = await policy.resolve(url)
    assert (target.host, target.address) == ("hooks.shop.example", "93.184.216.34")
    resolver.table["hooks.shop.example"] = ["93.184.216.34", "127.0.0.1"]  # DNS rebinding
    with pytest.raises(EgressRefused, match="resolves to 127.0.0.1"):
        await policy.resolve(url)
    with pytest.raises(EgressRefused):
        await policy.registrable(url)


async def test_a_name_that_resolves_inward_is_refused_at_registration_and_one_that_does_not_resolve_is_not(  # noqa: E501
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo",
                        FakeResolver({"metadata.internal": ["169.254.169.254"]}))
    policy = EgressPolicy()
    with pytest.raises(EgressRefused, match="link-local"):
        await policy.registrable("http://metadata.internal/")
    await policy.registrable("https://not-yet.shop.example/")
    with pytest.raises(OSError):
        await policy.resolve("https://not-yet.shop.example/")
