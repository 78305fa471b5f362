"""Who a client is, for counting: the key that rate limits and the login throttle count a client address under.

An IPv4 address is one client. An IPv6 address is not: a single subscriber is
routinely handed a whole /64 (RFC 6177 recommends at least that per site), and
picks addresses from it freely (privacy extensions, RFC 8981), so counting per
IPv6 address would give one attacker 2**64 fresh budgets. Every address in an
IPv6 /64 therefore counts as one client, like a single IPv4 address; an
IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, what a dual-stack socket
reports for an IPv4 peer) is the IPv4 client it maps.
"""

from __future__ import annotations

import ipaddress

IPV6_CLIENT_PREFIX = 64


def client_key(address: str) -> str:
    """The counting key of a client ``address``: an IPv4 address itself, an IPv6 address's /64 in CIDR form.

    What is not an IP address (``"unknown"``, a test client's name) is its own
    key, unchanged.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)
