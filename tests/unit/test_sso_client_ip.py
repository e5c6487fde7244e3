"""Which address the SSO takes for a caller (login throttle, audit): X-Forwarded-For only from a proxy."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.requests import Request

from meshkit.sso.settings import SsoSettings
from meshkit.sso.transport.caller import client_ip


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "method": "POST", "path": "/v1/login", "headers": headers,
                    "client": (peer, 40000)})


def test_a_proxy_on_a_private_network_speaks_for_its_client():
    assert client_ip(request("127.0.0.1", "203.0.113.9"), 1) == "203.0.113.9"
    assert client_ip(request("10.1.2.3", "198.51.100.1, 203.0.113.9"), 1) == "203.0.113.9"  # the last hop
    assert client_ip(request("10.1.2.3"), 1) == "10.1.2.3"


def test_a_caller_reaching_the_sso_directly_cannot_choose_its_address():
    # Before: any peer's X-Forwarded-For was believed: a direct caller picked a new address
    # per request, dodging the per-address login throttle and writing the audit's addresses.
    assert client_ip(request("203.0.113.50", "198.51.100.7"), 1) == "203.0.113.50"
    only = (ipaddress.ip_network("192.0.2.0/24"),)
    assert client_ip(request("10.1.2.3", "198.51.100.7"), 1, only) == "10.1.2.3"
    assert client_ip(request("192.0.2.8", "198.51.100.7"), 1, only) == "198.51.100.7"
    assert client_ip(request("127.0.0.1", "198.51.100.7"), 0) == "127.0.0.1"


def test_networks_that_are_not_networks_are_refused_at_start():
    with pytest.raises(ValueError, match="not a network"):
        SsoSettings(trusted_proxy_networks=["10.0.0.0/8", "gateway"])
