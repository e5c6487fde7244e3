"""Route matching: kinds, precedence, methods, hosts, rewriting."""

from __future__ import annotations

import pytest

from meshkit.gateway.router import PatternError, Router, compile_entry, host_of, rewrite_prefix


def table(*specs: dict) -> Router:
    return Router([compile_entry(s["name"], i, **{k: v for k, v in s.items() if k != "name"})
                   for i, s in enumerate(specs)])


def hit(router: Router, path: str, method: str = "GET", host: str = "") -> str | None:
    entry, _ = router.match(method, host, path)
    return entry.target if entry else None


def test_exact_beats_param_beats_prefix():
    r = table({"name": "prefix", "prefix": "/items/"}, {"name": "param", "path": "/items/{id}"},
              {"name": "exact", "path": "/items/new"})
    assert hit(r, "/items/new") == "exact"
    assert hit(r, "/items/42") == "param"
    assert hit(r, "/items/42/reviews") == "prefix"
    assert hit(r, "/items") == "prefix"  # "/items/" also matches the path without its slash


def test_longer_literal_prefix_wins_and_file_order_breaks_ties():
    r = table({"name": "api", "prefix": "/api"}, {"name": "catalog", "prefix": "/api/catalog/"},
              {"name": "catalog2", "prefix": "/api/catalog/"})
    assert hit(r, "/api/catalog/products") == "catalog"
    assert hit(r, "/api/orders") == "api"


def test_literal_segment_beats_param_at_same_position():
    r = table({"name": "a", "path": "/a/{x}/c"}, {"name": "b", "path": "/a/b/{y}"})
    assert hit(r, "/a/b/c") == "b"
    assert hit(r, "/a/z/c") == "a"


def test_prefix_is_segment_aware():
    r = table({"name": "cat", "prefix": "/api/catalog"})
    assert hit(r, "/api/catalog") == "cat"
    assert hit(r, "/api/catalog/x") == "cat"
    assert hit(r, "/api/catalogue") is None


def test_params_and_wildcards_capture():
    r = table({"name": "p", "path": "/users/{uid}/orders/{oid}"}, {"name": "w", "path": "/files/{rest...}"},
              {"name": "s", "path": "/static/*"})
    e, params = r.match("GET", "", "/users/7/orders/9")
    assert (e.target, params) == ("p", {"uid": "7", "oid": "9"})
    e, params = r.match("GET", "", "/files/a/b/c.txt")
    assert (e.target, params) == ("w", {"rest": "a/b/c.txt"})
    e, params = r.match("GET", "", "/static/css/x.css")
    assert (e.target, params) == ("s", {"wildcard": "css/x.css"})
    assert hit(r, "/users/7/orders") is None


def test_root_prefix_catches_everything_last():
    r = table({"name": "all", "prefix": "/"}, {"name": "x", "path": "/x"}, {"name": "api", "prefix": "/api/"})
    assert hit(r, "/x") == "x"
    assert hit(r, "/api/y") == "api"
    assert hit(r, "/anything/else") == "all"


def test_methods_filter_and_report_allowed():
    r = table({"name": "read", "prefix": "/c/", "methods": ["GET"]}, {"name": "write", "prefix": "/c/",
                                                                      "methods": ["POST", "PUT"]})
    assert hit(r, "/c/1", "GET") == "read"
    assert hit(r, "/c/1", "HEAD") == "read"  # HEAD follows GET
    assert hit(r, "/c/1", "PUT") == "write"
    entry, allowed = r.match("DELETE", "", "/c/1")
    assert entry is None and allowed == {"GET", "HEAD", "POST", "PUT"}
    entry, allowed = r.match("GET", "", "/nowhere")
    assert entry is None and not allowed


def test_host_specific_route_beats_generic_and_wildcard_hosts():
    r = table({"name": "any", "prefix": "/"}, {"name": "shop", "prefix": "/", "host": "shop.example.com"},
              {"name": "sub", "prefix": "/", "host": "*.internal"})
    assert hit(r, "/x", host="shop.example.com") == "shop"
    assert hit(r, "/x", host="a.internal") == "sub"
    assert hit(r, "/x", host="other.com") == "any"
    assert host_of(b"Shop.Example.com:8443") == "shop.example.com"
    assert host_of(b"[::1]:80") == "[::1]"


@pytest.mark.parametrize("pattern", ["/a/{b", "/a/*/c", "/a/x{id}", "/a/{id}/{id}", "/f/{rest...}/x"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(PatternError):
        compile_entry(None, 0, path=pattern)


def test_rewrite_prefix_keeps_one_slash():
    assert rewrite_prefix("/api/catalog/products", "/api/catalog/", "/") == "/products"
    assert rewrite_prefix("/api/catalog", "/api/catalog/", "/") == "/"
    assert rewrite_prefix("/api/catalog/products", "/api/catalog/", "/v2") == "/v2/products"
    assert rewrite_prefix("/api/catalog/products", "/api/catalog", "/") == "/products"
    assert rewrite_prefix("/old/x", "/old/", "/new/") == "/new/x"


@pytest.mark.parametrize("method", ["TRACE", "TRACK"])
def test_a_route_without_methods_takes_any_but_trace_which_one_must_list(method):
    # Before: "any method" included TRACE, which echoes the request (cookies, credentials) back.
    r = table({"name": "any", "prefix": "/api/"}, {"name": "exact", "path": "/ping"},
              {"name": "diag", "prefix": "/diag/", "methods": [method]})
    for path in ("/api/x", "/ping"):
        entry, allowed = r.match(method, "", path)
        assert entry is None and "GET" in allowed and method not in allowed
        assert hit(r, path, "DELETE") is not None
    assert hit(r, "/diag/x", method) == "diag"
