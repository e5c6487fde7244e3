"""Response cache: keys, policy, LRU by bytes, staleness."""

from __future__ import annotations

from meshkit.gateway.cache import ResponseCache, cache_control, request_bypass, response_ttl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_control_parsing():
    assert cache_control(b'public, max-age=30, s-maxage="60"') == {"public": "", "max-age": "30", "s-maxage": "60"}
    assert cache_control(None) == {}


def test_response_policy():
    ok = [(b"content-type", b"application/json")]
    assert response_ttl(200, ok, 30.0, False) == (30.0, ())
    assert response_ttl(200, [(b"cache-control", b"max-age=5")], 30.0, False) == (5.0, ())
    assert response_ttl(200, [(b"cache-control", b"public, s-maxage=7, max-age=5")], 30.0, False)[0] == 7.0
    assert response_ttl(500, ok, 30.0, False) is None  # errors never
    assert response_ttl(404, ok, 30.0, False) is None
    assert response_ttl(200, [(b"set-cookie", b"a=b")], 30.0, False) is None
    assert response_ttl(200, [(b"cache-control", b"private, max-age=60")], 30.0, False) is None
    assert response_ttl(200, [(b"cache-control", b"no-store")], 30.0, False) is None
    assert response_ttl(200, [(b"cache-control", b"max-age=0")], 30.0, False) is None
    assert response_ttl(200, [(b"vary", b"*")], 30.0, False) is None
    assert response_ttl(200, [(b"vary", b"Accept-Language, Accept")], 30.0, False) == (30.0, (b"accept-language",
                                                                                            b"accept"))
    # A request with credentials on a route whose key has no user: only explicitly public answers.
    assert response_ttl(200, ok, 30.0, True) is None
    assert response_ttl(200, [(b"cache-control", b"public")], 30.0, True) == (30.0, ())


def test_request_directives():
    assert request_bypass([]) == (True, True)
    assert request_bypass([(b"cache-control", b"no-cache")]) == (False, True)
    assert request_bypass([(b"cache-control", b"no-store")]) == (False, False)
    assert request_bypass([(b"pragma", b"no-cache")]) == (False, True)


def test_key_includes_vary_values_and_user():
    c = ResponseCache(1 << 20)
    en = [(b"accept-language", b"en")]
    de = [(b"accept-language", b"de")]
    p_alice = c.primary_key("r", "/x", "alice")
    c.store(p_alice, (), en, 200, [], b"english", 30, 60, (b"accept-language",))
    assert c.lookup(p_alice, (), en).body == b"english"
    assert c.lookup(p_alice, (), de) is None  # another language is another entry
    assert c.lookup(c.primary_key("r", "/x", "bob"), (), en) is None  # another user is another entry
    assert c.lookup(c.primary_key("r", "/x?page=2", "alice"), (), en) is None
    c.store(p_alice, (), de, 200, [], b"deutsch", 30, 60, (b"accept-language",))
    assert c.lookup(p_alice, (), de).body == b"deutsch" and c.lookup(p_alice, (), en).body == b"english"


def test_hop_headers_not_stored():
    c = ResponseCache(1 << 20)
    e = c.store(("r", "/", None), (), [], 200, [(b"content-type", b"text/plain"), (b"connection", b"close"),
                                            (b"x-cache", b"MISS"), (b"date", b"x")], b"b", 10, 0)
    assert e.headers == [(b"content-type", b"text/plain")]


def test_lru_by_bytes_evicts_oldest_untouched():
    c = ResponseCache(max_bytes=3 * (1000 + 256) + 10)
    for i in range(3):
        c.store(("r", f"/{i}", None), (), [], 200, [], b"x" * 1000, 30, 0)
    assert len(c) == 3
    c.lookup(("r", "/0", None), (), [])  # touch /0: /1 is now the oldest
    c.store(("r", "/3", None), (), [], 200, [], b"x" * 1000, 30, 0)
    assert len(c) == 3 and c.bytes <= c.max_bytes
    assert c.lookup(("r", "/1", None), (), []) is None
    assert c.lookup(("r", "/0", None), (), []) is not None
    assert c.store(("r", "/big", None), (), [], 200, [], b"x" * 10_000, 30, 0) is None  # larger than the cache


def test_expiry_then_stale_window_then_gone():
    clock = Clock()
    c = ResponseCache(1 << 20, clock=clock)
    key = ("r", "/", None)
    c.store(key, (), [], 200, [], b"v", ttl=10, stale=20)
    clock.now += 5
    e = c.lookup(key, (), [])
    assert e is not None and clock.now < e.expires and e.age(clock.now) == 5
    clock.now += 10  # expired, inside the stale window: returned, the caller sees it is expired
    e = c.lookup(key, (), [])
    assert e is not None and clock.now > e.expires
    clock.now += 30
    assert c.lookup(key, (), []) is None and c.bytes == 0


def test_purge_by_route_and_prefix():
    c = ResponseCache(1 << 20)
    c.store(("a", "/x/1", None), (), [], 200, [], b"1", 30, 0)
    c.store(("a", "/y/1", None), (), [], 200, [], b"2", 30, 0)
    c.store(("b", "/x/1", None), (), [], 200, [], b"3", 30, 0)
    assert c.purge(route="a", prefix="/x") == 1
    assert c.purge(route="b") == 1
    assert c.purge() == 1 and len(c) == 0 and c.bytes == 0


def test_what_the_cache_remembers_about_urls_is_bounded_like_its_entries():
    # One URL after another (a made-up query string per request) through a small cache: the
    # entries were bounded, but the Vary names remembered per URL were never dropped.
    c = ResponseCache(max_bytes=20_000)
    for i in range(5000):
        c.store(c.primary_key("r", f"/x?r={i}", None), (b"accept-language",), [], 200, [], b"x" * 100, 30, 0)
        c.store(c.primary_key("r", f"/y?r={i}", None), (), [], 200, [], b"y" * 100, 30, 0)
    assert len(c) < 100 and len(c._vary) == len(c._stored) <= len(c)
    c.purge(route="r")
    assert len(c) == 0 and not c._vary and not c._stored and c.bytes == 0
