"""Wiring of the SSO: ``python -m meshkit.sso.main``.

:func:`build` makes the :class:`~meshkit.basis.service.Service` without
starting it. On start: migrate the database → load (or make) the signing keys
→ remember stored revocations → connect to NATS and set the ``SSO`` stream's
retention → replay the stream's revocations, then follow new ones (other
instances' too) → republish stored revocations the stream lacks → make sure an
administrator exists (a generated password is printed once) → serve. A
background task rotates keys on schedule and prunes expired tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
from typing import Any

from meshkit.basis.service import Service, run
from meshkit.basis.storage import create_engine, session_factory, use_database
from meshkit.sso.adapters import (
    MIGRATIONS,
    AesGcmSealer,
    Argon2Hasher,
    BusPublisher,
    SqlAudit,
    SqlAuthz,
    SqlKeys,
    SqlMachines,
    SqlTokens,
    SqlUsers,
    decode_key,
    load_or_create_key_file,
)
from meshkit.sso.app import Accounts, Authz, KeyRing, Machines, Sessions, Tokens
from meshkit.sso.app.ports import Publisher
from meshkit.sso.app.tokens import LEEWAY
from meshkit.sso.domain import Throttle, ThrottleRule
from meshkit.sso.settings import SsoSettings
from meshkit.sso.transport import AdminHandlers, PublicHandlers, PublicOptions, routes
from meshkit.sso.transport.caller import PRIVATE_NETWORKS

log = logging.getLogger("meshkit.sso")


def build(settings: SsoSettings, *, publisher: Publisher | None = None) -> Service:
    """The SSO for ``settings``; ``publisher`` replaces the one on the bus (tests, benchmarks)."""
    s = settings
    engine = create_engine(s.database)
    sessions_factory = session_factory(engine)
    kek = (decode_key(s.key_encryption_key.get_secret_value()) if s.key_encryption_key
           else load_or_create_key_file(s.data_dir / "sso.kek"))
    hasher = Argon2Hasher(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib,
                          parallelism=s.argon2_parallelism, max_concurrent=s.max_concurrent_hashes)
    account_rule = ThrottleRule(free=s.account_free_failures, base_delay=s.throttle_base_delay,
                                max_delay=s.throttle_max_delay, lockout_after=s.account_lockout_after,
                                lockout=s.lockout_seconds, window=s.lockout_seconds)
    ip_rule = ThrottleRule(free=s.ip_free_failures, base_delay=s.throttle_base_delay, max_delay=s.throttle_max_delay,
                           lockout_after=s.ip_lockout_after, lockout=s.lockout_seconds, window=s.lockout_seconds)
    audit = SqlAudit(sessions_factory)
    accounts = Accounts(SqlUsers(sessions_factory), hasher, account_throttle=Throttle(account_rule),
                        ip_throttle=Throttle(ip_rule), audit=audit.record)
    keys = KeyRing(SqlKeys(sessions_factory), AesGcmSealer(kek), alg=s.signing_alg,
                   rotation_interval=s.key_rotation_interval, token_ttl=s.access_ttl + LEEWAY)
    bus_publisher = (BusPublisher(s.nats_url, source=s.name, retention=s.revocation_max_age)
                     if publisher is None else None)
    token_store = SqlTokens(sessions_factory)
    tokens = Tokens(keys, token_store, publisher or bus_publisher, issuer=s.issuer,  # type: ignore[arg-type]
                    audience=s.audience, access_ttl=s.access_ttl, refresh_ttl=s.refresh_ttl,
                    session_max=s.session_max)
    async def user_disabled(subject: str) -> bool:
        user = await accounts.find(subject)
        return user is not None and user.disabled

    machines = Machines(SqlMachines(sessions_factory), user_disabled=user_disabled)
    authz_holder: dict[str, Any] = {}

    async def subject_exists(subject: str) -> bool:
        return await authz_holder["sessions"].subject_exists(subject)

    async def user_active(subject: str) -> bool:
        user = await accounts.find(subject)
        return user is not None and not user.disabled

    authz = Authz(SqlAuthz(sessions_factory), subject_exists=subject_exists, user_active=user_active)
    sessions = Sessions(accounts, authz, tokens, machines)
    authz_holder["sessions"] = sessions
    options = PublicOptions(issuer=s.issuer, public_base=s.public_base, trusted_proxies=s.trusted_proxies,
                            proxy_networks=tuple(ipaddress.ip_network(n, strict=False)
                                                 for n in s.trusted_proxy_networks or PRIVATE_NETWORKS),
                            allow_signup=s.allow_signup, signing_alg=s.signing_alg)
    public = PublicHandlers(sessions, tokens, keys, authz, machines, options)
    admin = AdminHandlers(sessions, tokens, keys, authz, machines, audit)
    service = Service(s, routes=routes(public, admin), version=s.version)
    service.state.update(engine=engine, sessions=sessions, tokens=tokens, keys=keys, authz=authz,
                         machines=machines, accounts=accounts, audit=audit, hasher=hasher)
    background: list[asyncio.Task[None]] = []

    use_database(service, engine, MIGRATIONS)  # migrated before start(), disposed after stop()

    async def start(_service: Service) -> None:
        await keys.load()
        await tokens.load_revocations()
        if bus_publisher is not None:
            await bus_publisher.start()
            if await bus_publisher.follow(tokens.remember):
                await bus_publisher.republish_missing(await token_store.revocations(tokens.now()))
        generated = await sessions.bootstrap(s.admin_email, s.admin_password.get_secret_value()
                                             if s.admin_password else None)
        if generated:
            # Printed, not logged: log lines are shipped and kept; this must be seen once and changed.
            print(f"\n*** meshkit SSO: first administrator {s.admin_email} created with the one-time password\n"
                  f"***   {generated}\n*** log in and change it now (POST /api/sso/password); "
                  f"it is not shown again.\n", file=sys.stdout, flush=True)
        background.append(asyncio.create_task(_housekeeping(keys, tokens, s.key_check_interval)))

    async def stop(_service: Service) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if bus_publisher is not None:
            await bus_publisher.close()

    service.on_startup(start)
    service.on_shutdown(stop)
    return service


async def _housekeeping(keys: KeyRing, tokens: Tokens, interval: float) -> None:
    """Rotate keys on schedule (or pick up another instance's rotation); prune expired tokens."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await keys.rotate_if_due():
                log.info("signing key rotated on schedule: current kid %s", keys.current.kid)
            await tokens.prune()
        except Exception:
            log.exception("SSO housekeeping failed; retrying in %.0f s", interval)


def main() -> None:
    """Run the SSO with settings from the environment until SIGTERM/SIGINT."""
    run(build(SsoSettings()))


if __name__ == "__main__":
    main()
