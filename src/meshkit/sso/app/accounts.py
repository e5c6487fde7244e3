"""Users: sign-up, login, password change, disable/enable, the bootstrap administrator.

Nothing here tells an outsider whether an address has an account:

- sign-up answers the same for a new and an already registered address (and
  hashes the password either way, so it takes the same time);
- login answers ``invalid_credentials`` for an unknown address, a wrong
  password and a disabled account alike, after verifying the password against
  a dummy hash when there is no user — the same argon2 work, the same time;
- throttling counts failures per address whether or not the account exists.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

from meshkit.basis.errors import Conflict, NotFound, TooManyRequests, Unauthorized, Unprocessable
from meshkit.sso.app.ports import PasswordHasher, UserStore
from meshkit.sso.domain import (
    AuditEntry,
    Throttle,
    User,
    new_id,
    normalise_email,
    normalise_password,
    password_problems,
)

log = logging.getLogger("meshkit.sso")


def _now() -> datetime:
    return datetime.now(UTC)


def invalid_credentials() -> Unauthorized:
    return Unauthorized("the e-mail address or the password is wrong", reason="invalid_credentials")


def weak_password(problems: list[str]) -> Unprocessable:
    return Unprocessable("the password does not meet the policy: " + "; ".join(problems), reason="weak_password",
                         details=[{"loc": "password", "message": p, "type": "password_policy"} for p in problems])


def bad_email() -> Unprocessable:
    return Unprocessable("the e-mail address is not valid", reason="validation_failed",
                         details=[{"loc": "email", "message": "must be an address like name@example.com",
                                   "type": "email"}])


def _acceptable(email: str, password: str) -> str:
    """The normalised address, or 422 for a bad address or a weak password (judged in its normal form)."""
    normal = normalise_email(email)
    if normal is None:
        raise bad_email()
    problems = password_problems(normalise_password(password), normal)
    if problems:
        raise weak_password(problems)
    return normal


class Accounts:
    """User accounts over a :class:`UserStore` and a :class:`PasswordHasher`."""

    def __init__(self, users: UserStore, hasher: PasswordHasher, *, account_throttle: Throttle,
                 ip_throttle: Throttle, clock: Callable[[], datetime] = _now,
                 audit: Callable[[AuditEntry], Awaitable[None]] | None = None) -> None:
        self._users = users
        self._hasher = hasher
        #: Where a lockout is recorded (the audit log); ``None`` records nothing.
        self._audit = audit
        self.account_throttle = account_throttle
        self.ip_throttle = ip_throttle
        self._clock = clock
        self._dummy: str | None = None

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    async def signup(self, email: str, password: str, *, tenant: str | None = None) -> None:
        """Register ``email``; 422 for a bad address or a weak password, the same silence otherwise."""
        normal = _acceptable(email, password)
        encoded = await self._hasher.hash(normalise_password(password))
        now = self._clock()
        user = User(id=new_id("usr"), email=normal, password_hash=encoded, created_at=now, updated_at=now,
                    tenant=tenant)
        try:
            await self._users.add(user, AuditEntry(user.id, "user.signed_up", user.id, now, {"email": normal}))
        except Conflict:
            log.info("sign-up for an address that is already registered (answered like a new one)")

    async def create(self, email: str, password: str, actor: str, *, tenant: str | None = None) -> User:
        """An administrator creates a user (409 ``duplicate`` here: the caller is trusted)."""
        normal = _acceptable(email, password)
        now = self._clock()
        user = User(id=new_id("usr"), email=normal, password_hash=await self._hasher.hash(normalise_password(password)),
                    created_at=now, updated_at=now, tenant=tenant)
        try:
            await self._users.add(user, AuditEntry(actor, "user.created", user.id, now, {"email": normal}))
        except Conflict as exc:
            raise Conflict(f"{normal} already has an account", reason="duplicate_email") from exc
        return user

    def throttled(self, email_key: str, ip: str) -> None:
        """429 with ``Retry-After`` when the address or the client must still wait."""
        wait = max(self.account_throttle.wait(email_key), self.ip_throttle.wait(ip))
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise TooManyRequests(f"too many failed logins; wait {seconds} s before trying again",
                                  reason="login_throttled", headers={"Retry-After": str(seconds)},
                                  details={"retry_after": seconds})

    @contextlib.contextmanager
    def _attempt(self, key: str, ip: str) -> Iterator[None]:
        """429 when ``key`` or ``ip`` must wait; else count the attempt on both while it runs.

        Counted from the check on, with no ``await`` in between: concurrent guesses see each other
        (each used to pass the check before any of them had failed, however many were sent at once).
        """
        self.throttled(key, ip)
        self.account_throttle.begin(key)
        self.ip_throttle.begin(ip)
        try:
            yield
        finally:
            self.account_throttle.end(key)
            self.ip_throttle.end(ip)

    async def _failed(self, key: str, ip: str) -> None:
        """Count a failed attempt on the account and the address; audit a lockout either caused."""
        locked = [(f"account:{key}", self.account_throttle) if self.account_throttle.failed(key) else None,
                  (f"ip:{ip}", self.ip_throttle) if self.ip_throttle.failed(ip) else None]
        for target, throttle in filter(None, locked):
            log.warning("login locked for %.0f s after repeated failures: %s", throttle.rule.lockout, target)
            if self._audit is not None:
                await self._audit(AuditEntry("system:throttle", "login.locked", target[:200], self._clock(),
                                             {"ip": ip, "seconds": throttle.rule.lockout}))

    async def login(self, email: str, password: str, *, ip: str) -> User:
        """The user whose credentials these are; 401 ``invalid_credentials`` or 429 ``login_throttled``."""
        key = normalise_email(email) or (email or "")[:254].strip().lower()
        if not isinstance(password, str) or len(password) > 1024:
            password = ""
        with self._attempt(key, ip):
            user = await self._users.by_email(key) if normalise_email(email) else None
            encoded = user.password_hash if user else await self._dummy_hash()
            ok, as_given = await self._verify(encoded, password)
        if not ok or user is None or user.disabled:
            await self._failed(key, ip)
            raise invalid_credentials()
        self.account_throttle.succeeded(key)
        if as_given or self._hasher.needs_rehash(user.password_hash):
            # Parameters were raised since this hash was made, or it was made of the password as typed
            # (not normalised): upgrade it now that we know the password.
            user.password_hash = await self._hasher.hash(normalise_password(password))
            await self._users.set_password(user.id, user.password_hash, self._clock(), None)
        return user

    async def _verify(self, encoded: str, password: str) -> tuple[bool, bool]:
        """``(matches, matched only as typed)``: the normal form first; a hash made before passwords
        were normalised holds the password as it was typed. The same work whether or not the user exists."""
        normal = normalise_password(password)
        if await self._hasher.verify(encoded, normal):
            return True, False
        if normal != password and await self._hasher.verify(encoded, password):
            return True, True
        return False, False

    async def change_password(self, user_id: str, current: str, new: str, *, ip: str) -> User:
        """Change the password after checking the current one (throttled like a login)."""
        user = await self.get(user_id)
        with self._attempt(user.email, ip):
            ok, _ = await self._verify(user.password_hash, current if isinstance(current, str) else "")
        if not ok:
            await self._failed(user.email, ip)
            raise Unauthorized("the current password is wrong", reason="invalid_credentials")
        new = normalise_password(new)
        problems = password_problems(new, user.email)
        if problems:
            raise weak_password(problems)
        if new == normalise_password(current):
            raise weak_password(["choose a password different from the current one"])
        now = self._clock()
        await self._users.set_password(user.id, await self._hasher.hash(new), now,
                                       AuditEntry(user.id, "user.password_changed", user.id, now))
        return user

    async def set_disabled(self, user_id: str, disabled: bool, actor: str) -> User:
        now = self._clock()
        action = "user.disabled" if disabled else "user.enabled"
        if not await self._users.set_disabled(user_id, disabled, now, AuditEntry(actor, action, user_id, now)):
            raise NotFound(f"no user {user_id!r}", reason="user_not_found")
        return await self.get(user_id)

    async def get(self, user_id: str) -> User:
        user = await self._users.get(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", reason="user_not_found")
        return user

    async def find(self, user_id: str) -> User | None:
        return await self._users.get(user_id)

    async def by_email(self, email: str) -> User | None:
        normal = normalise_email(email)
        return await self._users.by_email(normal) if normal else None

    async def list(self, *, after: str | None, limit: int) -> list[User]:
        return await self._users.list(after=after, limit=limit)

    async def bootstrap_admin(self, email: str, password: str | None) -> tuple[User, str | None]:
        """The first administrator's account: ``(user, generated password or None)``.

        Without ``password`` a random one is generated; the caller prints it once.
        An existing account with that address is reused, enabled, with ``password``
        if one is given (its own one no longer opens it).
        """
        existing = await self.by_email(email)
        if existing is not None:
            if password and not (await self._verify(existing.password_hash, password))[0]:
                # Anyone may have signed up with this address while nobody held the admin role: the
                # account becomes the administrator with the configured password, not with its own.
                problems = password_problems(normalise_password(password), existing.email)
                if problems:
                    raise weak_password(problems)
                now = self._clock()
                await self._users.set_password(existing.id, await self._hasher.hash(normalise_password(password)),
                                               now, AuditEntry("system:bootstrap", "user.password_reset",
                                                               existing.id, now))
            if existing.disabled:
                existing = await self.set_disabled(existing.id, False, "system:bootstrap")
            return existing, None
        generated = None
        if not password:
            password = generated = secrets.token_urlsafe(18)
        try:
            return await self.create(email, password, "system:bootstrap"), generated
        except Conflict:
            # Another instance starting at the same time made it (a 409 failed this start): use theirs.
            existing = await self.by_email(email)
            if existing is None:
                raise
            return existing, None
