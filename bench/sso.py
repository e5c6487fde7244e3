"""SSO costs: logins per second (argon2-bound on purpose), token issues per second, gateway verification.

1. **logins/s** — ``POST /v1/login`` over HTTP on an in-process SSO (SQLite, the
   production argon2id parameters: m=19 MiB, t=2, p=1), ``CONCURRENCY`` clients,
   against the peer: bare ``argon2.PasswordHasher.verify`` with the same
   parameters in as many threads. The ratio is what everything else costs.
2. **token issues/s** — ``Tokens.mint`` (claims, jti, kid lookup, sign) against a
   plain ``jwt.encode`` of the same claims with the same key, EdDSA and RS256;
   plus a full ``POST /v1/refresh`` (rotation: DB read, conditional update,
   insert, sign) over HTTP for scale.
3. **gateway verification** — reuses :mod:`bench.jwt_verify` (Authenticator warm
   and cold vs PyJWT decode) on tokens of the same shape the SSO mints.

Bounded: about 30-40 s in all. Run: ``python -m bench.sso``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt

from bench._common import run

CONCURRENCY = 4
LOGIN_SECONDS = 6.0
MINT_SECONDS = 1.5
REFRESH_SECONDS = 3.0
PASSWORD = "tram-violet-ankle-93"


async def _sso(tmp: Path, alg: str = "EdDSA"):
    from meshkit.basis.testing import running
    from meshkit.sso.adapters import MemoryPublisher
    from meshkit.sso.main import build
    from meshkit.sso.settings import SsoSettings

    settings = SsoSettings(data_dir=tmp, registry_url=f"memory://bench-sso-{alg}", access_log=False,
                           request_metrics=False, log_level="warning", signing_alg=alg,
                           key_encryption_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
                           admin_password="bench-admin-passphrase", ip_free_failures=10**6,
                           account_free_failures=10**6, max_concurrent_hashes=CONCURRENCY)
    return running(build(settings, publisher=MemoryPublisher()))


async def _logins(url: str, emails: list[str]) -> tuple[float, int]:
    done = 0
    stop = time.perf_counter() + LOGIN_SECONDS
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        async def worker(i: int) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                r = await c.post("/v1/login", json={"email": emails[i], "password": PASSWORD})
                assert r.status_code == 200, r.text
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        return done / (time.perf_counter() - t0), done


def _argon2_peer(encoded: str) -> float:
    from argon2 import PasswordHasher

    ph = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    stop = time.perf_counter() + LOGIN_SECONDS
    counts = [0] * CONCURRENCY

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            ph.verify(encoded, PASSWORD)
            counts[i] += 1

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(work, range(CONCURRENCY)))
    return sum(counts) / (time.perf_counter() - t0)


def _rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    stop = t0 + seconds
    while time.perf_counter() < stop:
        for _ in range(50):
            fn()
        n += 50
    return n / (time.perf_counter() - t0)


async def _refreshes(url: str, refresh_token: str) -> float:
    n, token = 0, refresh_token
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < REFRESH_SECONDS:
            r = await c.post("/v1/refresh", json={"refresh_token": token})
            token = r.json()["refresh_token"]
            n += 1
        return n / (time.perf_counter() - t0)


async def _run(rows: list[tuple[str, str, float, float | None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with await _sso(Path(tmp)) as svc:
            async with httpx.AsyncClient(base_url=svc.url) as c:
                emails = [f"bench-{i}@example.com" for i in range(CONCURRENCY)]
                for e in emails:
                    await c.post("/v1/signup", json={"email": e, "password": PASSWORD})
                first = (await c.post("/v1/login", json={"email": emails[0], "password": PASSWORD})).json()
            encoded = (await svc.state["accounts"].by_email(emails[0])).password_hash
            rate, _ = await _logins(svc.url, emails)
            peer = await asyncio.to_thread(_argon2_peer, encoded)
            rows.append(("logins/s (HTTP, argon2id m=19MiB t=2 p=1)", "bare argon2 verify/s", rate, peer))
            tokens = svc.state["tokens"]
            for alg in ("EdDSA", "RS256"):
                if alg == "RS256":
                    from meshkit.sso.app import KeyRing

                    ring = KeyRing(svc.state["keys"]._store, svc.state["keys"]._sealer, alg="RS256")
                    await ring.rotate("bench", emergency=True)  # a fresh RS256 key becomes current
                    saved, tokens.keys = tokens.keys, ring
                kid, key_alg, private = tokens.keys.signing_key()
                claims = {"iss": tokens.issuer, "aud": tokens.audience, "sub": "usr_bench", "iat": 1, "nbf": 1,
                          "exp": 2**31, "jti": "x" * 32, "roles": ["customer"],
                          "permissions": ["catalog:read", "orders:read"], "client_kind": "user", "sid": "ses_x"}
                # In a thread: the service's loop keeps heartbeating (a 1.5 s block of the loop
                # let its registry entry expire and re-register, warnings in the output).
                mint = await asyncio.to_thread(
                    _rate, lambda: tokens.mint("usr_bench", roles=["customer"],
                                               permissions=["catalog:read", "orders:read"], sid="ses_x"),
                    MINT_SECONDS)
                header = {"kid": kid, "typ": "at+jwt"}
                plain = await asyncio.to_thread(
                    _rate, lambda: jwt.encode(claims, private, algorithm=key_alg, headers=header),  # noqa: B023
                    MINT_SECONDS)
                rows.append((f"token issues/s ({alg})", "jwt.encode/s", mint, plain))
                if alg == "RS256":
                    tokens.keys = saved
            rows.append(("refresh rotations/s (HTTP + DB)", "", await _refreshes(svc.url, first["refresh_token"]),
                         None))


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    rows: list[tuple[str, str, float, float | None]] = []
    run(_run(rows))
    print(f"SSO (concurrency {CONCURRENCY}; logins are argon2-bound on purpose: argon2id m=19 MiB, t=2, p=1)")
    print(f"{'meshkit':<44} {'per s':>10}   {'peer':<22} {'per s':>10} {'ratio':>7}")
    for name, peer_name, value, peer in rows:
        ratio = f"{value / peer:.2f}" if peer else ""
        peer_text = f"{peer:>10,.0f}" if peer else f"{'':>10}"
        print(f"{name:<44} {value:>10,.0f}   {peer_name:<22} {peer_text} {ratio:>7}")
    from bench import jwt_verify

    print("\ngateway token verification (same token shape as the SSO's), µs per call:")
    print(f"{'case':<14} {'µs/verify':>10} {'speed-up vs pyjwt':>18}")
    results = run(jwt_verify._measure("EdDSA", 2000))
    base = results["pyjwt decode"]
    for case, us in results.items():
        print(f"{case:<14} {us:>10.2f} {f'{base / us:.2f}×':>18}")
    print(f"(ran {time.perf_counter() - started:.1f} s; full table for both algorithms: python -m bench.jwt_verify)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
