"""The flows a client sees: log in, refresh, log out, change password, client credentials, bootstrap.

Each flow combines accounts (who), authorisation (what the token carries) and
tokens (issue, rotate, revoke); the HTTP handlers only decode and encode.
"""

from __future__ import annotations

from typing import Any

from meshkit.basis.context import Identity
from meshkit.basis.errors import Forbidden, Unauthorized
from meshkit.sso.app.accounts import Accounts
from meshkit.sso.app.authz import ADMIN_ROLE, Authz
from meshkit.sso.app.machines import Machines
from meshkit.sso.app.tokens import Tokens, invalid_grant


class Sessions:
    """User sessions and machine tokens."""

    def __init__(self, accounts: Accounts, authz: Authz, tokens: Tokens, machines: Machines) -> None:
        self.accounts = accounts
        self.authz = authz
        self.tokens = tokens
        self.machines = machines

    async def _user_claims(self, subject: str) -> tuple[list[str], list[str], str | None]:
        user = await self.accounts.find(subject)
        if user is None or user.disabled:
            raise Unauthorized("the account is disabled", reason="account_disabled")
        roles, permissions = await self.authz.claims_for(subject)
        return roles, permissions, user.tenant

    async def login(self, email: str, password: str, *, ip: str) -> dict[str, Any]:
        """Check the credentials and open a session: ``{access_token, refresh_token, token_type, expires_in}``."""
        user = await self.accounts.login(email, password, ip=ip)
        roles, permissions = await self.authz.claims_for(user.id)
        return await self.tokens.open_session(user.id, roles=roles, permissions=permissions, tenant=user.tenant,
                                              details={"ip": ip})

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Rotate the refresh token: a new pair carrying the user's *current* roles and permissions."""
        return await self.tokens.rotate(refresh_token, self._user_claims)

    async def logout(self, refresh_token: str | None, caller: Identity | None, *, access_exp: float | None = None,
                     session: str | None = None) -> None:
        """End the session of ``refresh_token`` (if it is the caller's) and of the caller's access token
        (``session`` = its ``sid``), and revoke that access token."""
        if refresh_token:
            record = await self.tokens.family_of(refresh_token)
            if record is None:
                if caller is None:
                    raise invalid_grant()
            elif caller is not None and record.subject != caller.subject:
                raise Forbidden("this refresh token belongs to another account", reason="not_your_session")
            elif record.revoked_at is None:
                await self.tokens.revoke_family(record.family, record.subject, "session.logged_out")
        elif caller is None:
            raise Unauthorized("send the refresh token in the body, or log out with your access token",
                               reason="credential_required")
        if caller is not None and caller.token_id:
            await self.tokens.revoke_access(caller.token_id, access_exp or self.tokens.now() + self.tokens.access_ttl)
        if caller is not None and session:
            await self.tokens.revoke_family(session, caller.subject, "session.logged_out")

    async def change_password(self, caller: Identity, current: str, new: str, *, ip: str,
                              session: str | None) -> int:
        """Change the caller's password and end every *other* session; returns how many were ended."""
        if caller.kind != "user":
            raise Forbidden("only users have passwords", reason="not_a_user")
        await self.accounts.change_password(caller.subject, current, new, ip=ip)
        return await self.tokens.revoke_sessions(caller.subject, caller.subject, keep=session)

    async def disable_user(self, user_id: str, actor: str) -> None:
        """Disable a user and end all of their sessions at once (tokens revoked on every gateway).

        409 ``last_admin`` for the last enabled administrator (yourself included).
        """
        if ADMIN_ROLE in await self.authz.roles_of(user_id):
            await self.authz.keep_an_admin(leaving=user_id)
        await self.accounts.set_disabled(user_id, True, actor)
        await self.tokens.revoke_sessions(user_id, actor)

    async def client_credentials(self, client_id: str, client_secret: str, scope: str | None) -> dict[str, Any]:
        """OAuth2 client-credentials grant: a token for the service account, narrowed to ``scope`` if given."""
        account = await self.machines.authenticate(client_id, client_secret)
        roles, permissions = await self.authz.claims_for(account.id)
        if scope:
            asked = set(scope.split())
            extra = sorted(asked - set(permissions))
            if extra:
                raise Forbidden(f"the service account may not have {extra}: ask for a subset of its permissions",
                                reason="invalid_scope", details={"not_granted": extra})
            permissions = sorted(asked)
            # A narrowed token carries no roles: a role brings every grant it has (policy engines,
            # POST /v1/authorize and role-checked routes decide on it), which would undo the narrowing.
            roles = []
        token, exp = await self.tokens.issue_machine(account.id, roles=roles, permissions=permissions,
                                                     tenant=account.tenant, scope=" ".join(permissions))
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(exp - int(self.tokens.now())),
                "scope": " ".join(permissions)}

    async def rotate_account_secret(self, account_id: str, actor: str) -> str:
        """A new client secret (returned once); tokens got with the old one are revoked everywhere."""
        secret = await self.machines.rotate_secret(account_id, actor)
        await self.tokens.revoke_subject(account_id)
        return secret

    async def disable_account(self, account_id: str, actor: str) -> None:
        """Disable a service account and revoke the tokens it holds (they lived on until they expired)."""
        await self.machines.set_disabled(account_id, True, actor)
        await self.tokens.revoke_subject(account_id)

    async def bootstrap(self, email: str, password: str | None) -> str | None:
        """Make sure an administrator exists; returns a generated password to print once, or ``None``."""
        await self.authz.ensure_admin_role()
        if await self.authz.holders(ADMIN_ROLE):
            return None
        user, generated = await self.accounts.bootstrap_admin(email, password)
        # An account that existed before holds sessions of whoever signed up with the address: refreshed
        # after the role is assigned, they would carry sso:admin. (A new account has none.)
        await self.tokens.revoke_sessions(user.id, "system:bootstrap")
        await self.authz.assign(user.id, ADMIN_ROLE, "system:bootstrap")
        return generated

    async def subject_exists(self, subject: str) -> bool:
        return (await self.accounts.find(subject)) is not None or (await self.machines.account(subject)) is not None
