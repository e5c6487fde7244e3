"""sso.app.accounts: logins sent at once are throttled as if sent one after the other."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from meshkit.basis.errors import TooManyRequests, Unauthorized
from meshkit.sso.app import Accounts
from meshkit.sso.domain import Throttle, ThrottleRule, User


class MemoryUsers:
    def __init__(self, *users: User) -> None:
        self.rows = {u.id: u for u in users}

    async def by_email(self, email):
        await asyncio.sleep(0)  # a database round trip
        return next((replace(u) for u in self.rows.values() if u.email == email), None)

    async def get(self, user_id):
        return replace(self.rows[user_id]) if user_id in self.rows else None


class GatedHasher:
    """Verifies ``right`` as the only password, once the test opens the gate (a slow hash, in flight)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.verified = 0

    async def hash(self, password):
        return f"hash:{password}"

    async def verify(self, encoded, password):
        await self.gate.wait()
        self.verified += 1
        return encoded == f"hash:{password}"

    def needs_rehash(self, encoded):
        return False


def _accounts(hasher, users):
    rule = ThrottleRule(free=3, base_delay=1.0, max_delay=60.0, lockout_after=10, lockout=900, window=900)
    return Accounts(users, hasher, account_throttle=Throttle(rule), ip_throttle=Throttle(replace(rule, free=20)))


async def test_guesses_sent_at_once_are_throttled_like_guesses_in_a_row():
    now = datetime.now(UTC)
    hasher = GatedHasher()
    accounts = _accounts(hasher, MemoryUsers(User("usr_1", "ann@example.com", "hash:right-password-1", now, now)))
    tries = [asyncio.create_task(accounts.login("ann@example.com", f"guess-{i:04d}-xyz", ip=f"10.0.0.{i}"))
             for i in range(40)]
    await asyncio.sleep(0.05)  # every request is in: the throttle has answered each one
    hasher.gate.set()
    results = await asyncio.gather(*tries, return_exceptions=True)
    guessed = sum(isinstance(r, Unauthorized) for r in results)
    assert guessed == hasher.verified == 4  # not 40: the rest waited (429 with Retry-After)
    assert all(isinstance(r, TooManyRequests | Unauthorized) for r in results)


async def test_the_right_password_in_flight_with_guesses_still_logs_in():
    now = datetime.now(UTC)
    hasher = GatedHasher()
    accounts = _accounts(hasher, MemoryUsers(User("usr_1", "ann@example.com", "hash:right-password-1", now, now)))
    hasher.gate.set()
    assert (await accounts.login("ann@example.com", "right-password-1", ip="10.0.0.1")).id == "usr_1"
    assert accounts.account_throttle.wait("ann@example.com") == 0.0 and accounts.ip_throttle.wait("10.0.0.1") == 0.0


async def test_a_lockout_is_audited_once_for_the_account_and_once_for_the_address():
    now = datetime.now(UTC)
    hasher = GatedHasher()
    hasher.gate.set()
    entries = []

    async def record(entry):
        entries.append(entry)

    rule = ThrottleRule(free=10, base_delay=0.0, lockout_after=3, lockout=900, window=900)
    accounts = Accounts(MemoryUsers(User("usr_1", "ann@example.com", "hash:right-password-1", now, now)), hasher,
                        account_throttle=Throttle(rule), ip_throttle=Throttle(replace(rule, lockout_after=4)),
                        audit=record)
    for _ in range(3):
        try:
            await accounts.login("Ann@Example.com", "guess-guess-guess", ip="10.9.9.9")
        except Unauthorized:
            pass
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("system:throttle", "login.locked", "account:ann@example.com")]
    try:
        await accounts.login("bob@example.com", "guess-guess-guess", ip="10.9.9.9")
    except Unauthorized:
        pass
    assert entries[-1].target == "ip:10.9.9.9" and entries[-1].details == {"ip": "10.9.9.9", "seconds": 900}
    assert len(entries) == 2 and all("guess" not in str(e.details) for e in entries)
