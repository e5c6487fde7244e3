"""Per-request cost of token verification: meshkit's Authenticator (cache warm, cache cold) vs PyJWT.

For EdDSA (Ed25519) and RS256 (2048-bit):

- ``meshkit warm``  — ``await auth.authenticate("Bearer <t>", None)`` on a token already verified
  (the gateway's common path: one cache lookup);
- ``meshkit cold``  — the same call on tokens never seen before (full signature and claims check);
- ``pyjwt decode``  — ``jwt.decode(t, key, algorithms=[alg], audience=..., issuer=...)`` of the
  same tokens, with the key object prepared once (PyJWT has no cache: every call is cold).

Prints µs per verification and ratios against PyJWT. Bounded: about 10 s in all.
"""

from __future__ import annotations

import sys
import time

import jwt

from bench._common import run
from meshkit.gateway.security import Authenticator
from meshkit.gateway.security.testing import TokenIssuer

WARM_CALLS = 200_000
REPEATS = 3
COLD_TOKENS = {"EdDSA": 2000, "RS256": 600}


async def _measure(alg: str, cold_count: int) -> dict[str, float]:
    issuer = TokenIssuer(alg)
    tokens = [issuer.token(f"user-{i}", roles=["customer"], permissions=["orders:read", "catalog:read"])
              for i in range(cold_count)]
    headers = [f"Bearer {t}" for t in tokens]
    key = jwt.PyJWK(issuer.jwk).key

    def auth_new() -> Authenticator:
        return Authenticator(jwks=issuer.jwks(), issuer=issuer.issuer, audience=issuer.audience,
                             cache_size=cold_count + 10)

    # warm: one token, verified once beforehand
    auth = auth_new()
    await auth.authenticate(headers[0], None)

    async def warm() -> None:
        h, a = headers[0], auth.authenticate
        for _ in range(WARM_CALLS):
            await a(h, None)

    # cold: every token once, on a fresh authenticator per repeat (so nothing is cached)
    async def cold() -> None:
        a = auth_new().authenticate
        for h in headers:
            await a(h, None)

    def pyjwt() -> None:
        for t in tokens:
            jwt.decode(t, key, algorithms=[alg], audience=issuer.audience, issuer=issuer.issuer, leeway=30)

    # Interleaved repeats, best of each: the three cases see the same (shared) machine.
    best = {"meshkit warm": float("inf"), "meshkit cold": float("inf"), "pyjwt decode": float("inf")}
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        await warm()
        t1 = time.perf_counter()
        await cold()
        t2 = time.perf_counter()
        pyjwt()
        t3 = time.perf_counter()
        best["meshkit warm"] = min(best["meshkit warm"], (t1 - t0) / WARM_CALLS * 1e6)
        best["meshkit cold"] = min(best["meshkit cold"], (t2 - t1) / cold_count * 1e6)
        best["pyjwt decode"] = min(best["pyjwt decode"], (t3 - t2) / cold_count * 1e6)
    return best


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    print(f"token verification, µs per call (best of {REPEATS}; warm: {WARM_CALLS:,} calls; "
          f"cold: {', '.join(f'{a} {n}' for a, n in COLD_TOKENS.items())} fresh tokens)")
    print(f"{'alg':<7} {'case':<14} {'µs/verify':>10} {'speed-up vs pyjwt':>18} {'verifies/s':>12}")
    for alg, count in COLD_TOKENS.items():
        results = run(_measure(alg, count))
        base = results["pyjwt decode"]
        for case, us in results.items():
            print(f"{alg:<7} {case:<14} {us:>10.2f} {f'{base / us:.2f}×':>18} {1e6 / us:>12,.0f}")
    print(f"(ran {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
