"""The key a client address is counted under: IPv4 per address, IPv6 per /64, IPv4-mapped IPv6 as its IPv4."""

from __future__ import annotations

import pytest

from strata.schemas import client_key


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.8", "203.0.113.8"),
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::ffff:cb00:7107", "203.0.113.7"),
        ("unknown", "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_slash_64(address: str, key: str) -> None:
    assert client_key(address) == key


def test_every_address_of_one_ipv6_slash_64_is_one_client_and_the_next_slash_64_another() -> None:
    inside = {client_key(f"2001:db8:aa:bb:{i:x}::{j:x}") for i in range(0, 0x10000, 0x1111) for j in (1, 0xFFFF)}
    assert inside == {"2001:db8:aa:bb::/64"}
    assert client_key("2001:db8:aa:bc::1") != client_key("2001:db8:aa:bb::1")


def test_ipv4_addresses_are_never_grouped() -> None:
    assert len({client_key(f"198.51.100.{i}") for i in range(256)}) == 256


def test_an_ipv4_mapped_address_shares_its_ipv4_clients_count() -> None:
    assert client_key("::ffff:198.51.100.20") == client_key("198.51.100.20")
    assert client_key("::ffff:198.51.100.20") != client_key("::ffff:198.51.100.21")
