"""The default system (`meshkit up`) and the gateway's default routes agree: the storefront is in both."""

from __future__ import annotations

import pytest

from meshkit.cli.system import load_system
from meshkit.gateway.loader import default_routes_path, load_routes
from meshkit.gateway.table import compile_table
from meshkit.gateway.upstream import Pools, PoolSettings


def test_the_storefront_starts_after_the_catalog_and_before_the_gateway():
    names = [s.name for s in load_system().services]
    assert names.index("catalog") < names.index("storefront") < names.index("gateway")
    storefront = load_system().get("storefront")
    assert storefront is not None and storefront.module == "meshkit.services.storefront.main"
    assert storefront.port is None and not storefront.public  # reached through the gateway only


def test_every_service_the_default_routes_name_is_in_the_default_system():
    started = {s.name for s in load_system().services}
    routed = {r.upstream.service for r in load_routes(default_routes_path()).routes if r.upstream}
    assert routed - {None} <= started


@pytest.mark.parametrize(("path", "upstream"), [
    ("/api/storefront/products", "/products"),
    ("/api/storefront/products/0199-abc", "/products/0199-abc"),
])
def test_storefront_reads_are_public_uncached_and_rewritten(path, upstream):
    table = compile_table(load_routes(default_routes_path()), Pools(PoolSettings(), lambda name: []), "<test>")
    for method in ("GET", "HEAD"):
        entry, params = table.router.match(method, "127.0.0.1", path)
        assert entry is not None, (method, path)
        route = entry.target
        assert route.cfg.upstream.service == "storefront"
        assert route.cfg.auth != "required" and route.cfg.cache is None
        assert route.upstream_path(path, params) == upstream


@pytest.mark.parametrize("path", ["/api/storefront/metrics", "/api/storefront/readyz", "/api/storefront/"])
def test_only_the_products_of_the_storefront_are_exposed(path):
    table = compile_table(load_routes(default_routes_path()), Pools(PoolSettings(), lambda name: []), "<test>")
    entry, _ = table.router.match("GET", "127.0.0.1", path)
    assert entry is None


def test_the_storefront_is_read_only_at_the_gateway():
    table = compile_table(load_routes(default_routes_path()), Pools(PoolSettings(), lambda name: []), "<test>")
    entry, allowed = table.router.match("POST", "127.0.0.1", "/api/storefront/products")
    assert entry is None and "POST" not in (allowed or ())


@pytest.mark.parametrize(("method", "path", "upstream"), [
    ("GET", "/api/catalog/products", "/products"),
    ("GET", "/api/catalog/products/0199-abc", "/products/0199-abc"),
    ("POST", "/api/catalog/products", "/products"),
    ("PATCH", "/api/catalog/products/0199-abc", "/products/0199-abc"),
])
def test_catalog_products_are_routed_and_rewritten(method, path, upstream):
    table = compile_table(load_routes(default_routes_path()), Pools(PoolSettings(), lambda name: []), "<test>")
    entry, params = table.router.match(method, "127.0.0.1", path)
    assert entry is not None and entry.target.cfg.upstream.service == "catalog"
    assert entry.target.upstream_path(path, params) == upstream


@pytest.mark.parametrize("path", ["/api/catalog/metrics", "/api/catalog/readyz", "/api/catalog/livez",
                                  "/api/catalog/", "/api/catalog/productsx"])
def test_only_the_products_of_the_catalog_are_exposed(path):
    table = compile_table(load_routes(default_routes_path()), Pools(PoolSettings(), lambda name: []), "<test>")
    entry, _ = table.router.match("GET", "127.0.0.1", path)
    assert entry is None


def test_docs_list_every_default_route_and_no_other():
    import re
    from pathlib import Path

    docs = Path(__file__).parents[2] / "docs" / "gateway.md"
    section = docs.read_text().split("## Default routes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.MULTILINE))
    assert documented == {r.name for r in load_routes(default_routes_path()).routes}
