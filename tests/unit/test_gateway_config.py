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


@pytest.mark.parametrize(("upstream", "problem"), [
    ('{url: "http://127.0.0.1:70000"}', "port 70000 is not between 1 and 65535"),
    ('{url: "http://127.0.0.1:0/base"}', "port 0 is not between 1 and 65535"),
    ('{url: "https://api.example.com"}', "plain HTTP to upstreams"),
])
def test_an_upstream_url_that_cannot_work_is_refused_with_its_line(upstream, problem):
    # A port out of range passed validation and failed while the table was built: at start-up a
    # bare ValueError, on a reload an exception that ended the file watcher (no reload after it).
    # https:// was accepted and spoken to in plain text.
    err = refused(f"""routes:
  - name: a
    match: {{path: /a}}
    upstream: {upstream}
""")
    assert err.message.startswith("routes.yaml:4: routes[0].upstream: ") and problem in err.message


def test_an_aggregate_part_url_is_checked_like_an_upstream_url():
    err = refused("""routes:
  - name: a
    match: {path: "/a/{id}"}
    aggregate:
      parts:
        one: {url: "not a url", path: "/x/{id}"}
""")
    assert err.message.startswith("routes.yaml:6: routes[0].aggregate.parts.one: ") and "http://host" in err.message


@pytest.mark.parametrize(("match", "template", "problem"), [
    ('{path: "/items/{id}"}', "/v2/items/{idd}", "{idd} in '/v2/items/{idd}' is not a parameter of the route's "
                                                 "match (its parameters: {id})"),
    ('{prefix: /items/}', "/v2/{id}", "(its parameters: none)"),
    ('{path: "/items/{id}"}', "/v2/items/{id", "is not a valid path template"),
    ('{path: "/items/{id}"}', "/v2/items/{id!r}", "{id!r} in"),
    ('{path: "/items/{id}"}', "/v2/{id.__class__}", "is not a parameter"),
])
def test_a_rewrite_template_that_cannot_be_filled_is_refused_with_its_line(match, template, problem):
    # At request time a typo gave an empty segment ("/v2/items/"), an unbalanced brace a 500 to
    # every request (and, on the task-free path, a bulkhead slot never given back).
    err = refused(f"""routes:
  - name: a
    match: {match}
    upstream: {{service: a}}
    rewrite:
      path: "{template}"
""")
    assert err.message.startswith("routes.yaml:6: routes[0].rewrite.path: ") and problem in err.message, err.message


def test_a_template_using_the_match_parameters_is_accepted():
    spec = parse_routes("""routes:
  - name: a
    match: {path: "/items/{id}/{rest...}"}
    upstream: {service: a}
    rewrite: {path: "/v2/{id}/files/{rest}?braces={{x}}"}
  - name: b
    match: {path: "/p/{id}"}
    aggregate:
      parts:
        user: {service: users, path: "/users/{id}"}
""")
    assert [r.name for r in spec.routes] == ["a", "b"]
    err = refused("""routes:
  - name: b
    match: {path: "/p/{id}"}
    aggregate:
      parts:
        user: {service: users, path: "/users/{user_id}"}
""")
    assert err.message.startswith("routes.yaml:6: routes[0].aggregate.parts.user.path: ")


def test_a_fallback_status_must_be_a_final_http_status():
    err = refused("""routes:
  - name: a
    match: {path: /a}
    upstream: {service: a}
    fallback: {status: 99999}
""")
    assert err.message.startswith("routes.yaml:5: routes[0].fallback.status: ")


@pytest.mark.parametrize(("cors", "problem"), [
    ('{allow_origins: ["*"], allow_credentials: true}', "list the origins allowed"),
    ("{allow_credentials: true}", "list the origins allowed"),  # '*' is the default
    ('{allow_origins: ["https://shop.example", "null"]}', "sandboxed frames"),
])
def test_cors_that_would_let_any_site_read_with_credentials_is_refused(cors, problem):
    # Before: '*' with credentials echoed every origin back (and 'null' was allowed): any
    # site could read the route's answers made with its visitors' cookies or credentials.
    err = refused(f"""routes:
  - name: a
    match: {{prefix: /a/}}
    upstream: {{service: a}}
    cors: {cors}
""")
    assert err.message.startswith("routes.yaml:") and problem in err.message
