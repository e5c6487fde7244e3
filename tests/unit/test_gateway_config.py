"""Routes files: what is accepted, and errors that name file, line and problem."""

from __future__ import annotations

import pytest

from meshkit.basis.errors import ConfigError
from meshkit.gateway.loader import default_routes_path, load_routes, parse_routes


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_routes(text, "routes.yaml")
    return info.value


def test_default_routes_file_is_valid_and_serves_catalog():
    spec = load_routes(default_routes_path())
    by_name = {r.name: r for r in spec.routes}
    read, write = by_name["catalog-read"], by_name["catalog-write"]
    assert read.match.prefix == "/api/catalog/products" and read.upstream.service == "catalog"
    assert read.rewrite.prefix == "/products" and read.auth != "required"
    assert write.auth == "required" and write.permissions == ["catalog:write"]


def test_defaults_are_merged_and_durations_parsed():
    spec = parse_routes("""
defaults:
  timeout: 250ms
  retry: {attempts: 3}
routes:
  - name: a
    match: {path: /a}
    upstream: {service: a}
    retry: {backoff: 2s}
  - name: b
    match: {prefix: /b/}
    upstream: {url: "http://127.0.0.1:9000/base"}
    timeout: 2m
""")
    a, b = spec.routes
    assert a.timeout == 0.25 and a.retry.attempts == 3 and a.retry.backoff == 2.0
    assert b.timeout == 120.0


def test_unknown_key_names_line_and_path():
    err = refused("""routes:
  - name: a
    match: {path: /a}
    upstream: {service: a, balancr: p2c}
""")
    assert "routes.yaml:4:" in err.message and "routes[0].upstream.balancr" in err.message
    assert "unknown setting" in err.message
    assert err.details["line"] == 4


def test_bad_duration_and_missing_target():
    err = refused("""routes:
  - name: a
    match: {path: /a}
    upstream: {service: a}
    timeout: forever
  - name: b
    match: {path: /b}
""")
    assert "routes.yaml:5: routes[0].timeout" in err.message and "not a duration" in err.message
    assert "routes.yaml:6: routes[1]" in err.message and "exactly one of 'upstream' and 'aggregate'" in err.message


def test_duplicate_names_and_bad_pattern_name_the_line():
    err = refused("""routes:
  - name: a
    match: {path: /a}
    upstream: {service: a}
  - name: a
    match: {path: /b}
    upstream: {service: b}
""")
    assert err.message.startswith("routes.yaml:5:") and "line 2" in err.message
    err = refused("""routes:
  - name: a
    match:
      path: /items/{id
    upstream: {service: a}
""")
    assert err.message.startswith("routes.yaml:4:") and "'{id'" in err.message


def test_yaml_syntax_error_and_duplicate_keys():
    err = refused("routes:\n  - name: a\n    match: {path: /a\n")
    assert err.message.startswith("routes.yaml:") and "not valid YAML" in err.message
    err = refused("routes:\n  - name: a\n    name: b\n")
    assert err.message.startswith("routes.yaml:3:") and "appears twice" in err.message


def test_semantic_rules():
    err = refused("""routes:
  - name: a
    match: {path: /a, methods: [FETCH]}
    upstream: {service: a, url: "http://x:1"}
    roles: [admin]
""")
    assert "unknown method" in err.message
    assert "exactly one of 'service' and 'url'" in err.message
    err = refused("""routes:
  - name: a
    match: {path: /a}
    upstream: {service: a}
    roles: [admin]
""")
    assert err.message.startswith("routes.yaml:2: routes[0]:") and "need 'auth: required'" in err.message


def test_unreadable_file_says_which_setting(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_routes(tmp_path / "missing.yaml")
    assert "GATEWAY_ROUTES_FILE" in info.value.message
