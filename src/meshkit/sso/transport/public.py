"""The SSO's public endpoints: sign-up, login, refresh, logout, userinfo, password, discovery, OAuth2.

Statuses: 202 sign-up accepted (the same for an address already registered),
200 tokens, 204 logged out (200 for an RFC 7009 form-encoded revocation), 401 ``invalid_credentials`` / ``invalid_grant`` /
``invalid_token`` / ``invalid_client``, 403 ``invalid_scope``, 422 invalid
fields or ``weak_password``, 429 ``login_throttled`` with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from meshkit.basis.errors import BadRequest, Forbidden, Unauthorized
from meshkit.basis.web import json_response, parse_body
from meshkit.sso.app import Authz, KeyRing, Machines, Sessions, Tokens
from meshkit.sso.transport.caller import PRIVATE, caller, caller_of_token, client_ip, require_caller
from meshkit.sso_sdk.models import AuthorizeIn, Credentials, LogoutIn, PasswordChange, RefreshIn

_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
SIGNUP_ACCEPTED = {"status": "accepted",
                   "message": "if this address had no account, it has one now: log in with POST /api/sso/login"}


@dataclass(frozen=True, slots=True)
class PublicOptions:
    issuer: str
    public_base: str
    trusted_proxies: int = 1
    #: Where a peer must be for its X-Forwarded-For to count (see caller.client_ip).
    proxy_networks: tuple = PRIVATE
    allow_signup: bool = True
    signing_alg: str = "EdDSA"


class PublicHandlers:
    """Handlers of the endpoints anyone (or any logged-in user) may call."""

    def __init__(self, sessions: Sessions, tokens: Tokens, keys: KeyRing, authz: Authz, machines: Machines,
                 options: PublicOptions) -> None:
        self.sessions, self.tokens, self.keys, self.authz, self.machines = sessions, tokens, keys, authz, machines
        self.options = options

    async def signup(self, request: Request) -> Response:
        if not self.options.allow_signup:
            raise Forbidden("sign-up is closed here; ask an administrator for an account", reason="signup_closed")
        body = await parse_body(request, Credentials)
        await self.sessions.accounts.signup(body.email, body.password)
        return json_response(SIGNUP_ACCEPTED, status=202)

    async def login(self, request: Request) -> Response:
        body = await parse_body(request, Credentials)
        pair = await self.sessions.login(body.email, body.password, ip=client_ip(request, self.options.trusted_proxies, self.options.proxy_networks))
        return json_response(pair, headers=_NO_STORE)

    async def refresh(self, request: Request) -> Response:
        body = await parse_body(request, RefreshIn)
        return json_response(await self.sessions.refresh(body.refresh_token), headers=_NO_STORE)

    async def logout(self, request: Request) -> Response:
        raw = await request.body()
        if raw.strip() and not raw.lstrip().startswith(b"{"):
            return await self._revoke(await _form(request))
        body = await parse_body(request, LogoutIn) if raw.strip() else LogoutIn()
        who = caller(request, self.tokens)
        if who is not None and who.claims is None:
            # An identity in headers names a token (x-meshkit-token-id) it need not hold: revoking that
            # let whoever reached the SSO directly revoke anyone's token. Only a token we verified counts.
            who = None
        await self.sessions.logout(body.refresh_token, who.identity if who else None,
                                   access_exp=who.exp if who else None, session=who.session if who else None)
        return Response(status_code=204)

    async def _revoke(self, form: dict[str, str]) -> Response:
        """RFC 7009 (the discovery document's ``revocation_endpoint``): ``token=`` a refresh or an access
        token, form-encoded; 200 whether or not it was valid (the spec's answer: nothing to tell)."""
        token = form.get("token")
        if not token:
            raise BadRequest("send token=<refresh or access token> (RFC 7009)", reason="invalid_request")
        if token.count(".") == 2:  # a JWT: one of our access tokens, and the session it belongs to
            with contextlib.suppress(Unauthorized):
                who = caller_of_token(token, self.tokens)
                await self.sessions.logout(None, who.identity, access_exp=who.exp, session=who.session)
        else:
            record = await self.tokens.family_of(token)
            if record is not None and record.revoked_at is None:
                await self.tokens.revoke_family(record.family, record.subject, "session.logged_out")
        return Response(status_code=200, headers=_NO_STORE)

    async def userinfo(self, request: Request) -> Response:
        who = require_caller(request, self.tokens)
        ident = who.identity
        info = {"sub": ident.subject, "roles": sorted(ident.roles), "permissions": sorted(ident.permissions),
                "tenant": ident.tenant, "client_kind": ident.kind}
        if ident.kind == "user":
            user = await self.sessions.accounts.find(ident.subject)
            if user is not None:
                info["email"] = user.email
        return json_response(info, headers=_NO_STORE)

    async def password(self, request: Request) -> Response:
        who = require_caller(request, self.tokens)
        body = await parse_body(request, PasswordChange)
        ended = await self.sessions.change_password(who.identity, body.current_password, body.new_password,
                                                    ip=client_ip(request, self.options.trusted_proxies, self.options.proxy_networks),
                                                    session=who.session)
        return json_response({"status": "changed", "other_sessions_ended": ended})

    async def jwks(self, request: Request) -> Response:
        # Short cache: gateways refetch on an unknown kid anyway, and the next key is published ahead.
        return json_response(self.keys.jwks(), headers={"cache-control": "public, max-age=300"})

    async def openid_configuration(self, request: Request) -> Response:
        base, issuer = self.options.public_base.rstrip("/"), self.options.issuer.rstrip("/")
        return json_response({
            "issuer": self.options.issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "token_endpoint": f"{issuer}/oauth/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "revocation_endpoint": f"{base}/logout",
            # What token_endpoint accepts (a password logs in at /login, not here: an OIDC client
            # trusting "password" was told 400 unsupported_grant_type).
            "grant_types_supported": ["refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": [self.options.signing_alg],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "claims_supported": ["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "roles", "permissions", "tenant",
                                 "sid", "client_kind", "scope"],
        }, headers={"cache-control": "public, max-age=3600"})

    async def oauth_token(self, request: Request) -> Response:
        """RFC 6749 token endpoint: ``client_credentials`` (Basic or form secret) and ``refresh_token``."""
        form = await _form(request)
        grant = form.get("grant_type")
        if grant == "refresh_token":
            return json_response(await self.sessions.refresh(form.get("refresh_token", "")), headers=_NO_STORE)
        if grant != "client_credentials":
            raise BadRequest("grant_type must be client_credentials or refresh_token", reason="unsupported_grant_type")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            import base64
            import binascii

            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise BadRequest("the Basic credentials are not base64 of client_id:client_secret",
                                 reason="invalid_request") from exc
        answer = await self.sessions.client_credentials(client_id, secret, form.get("scope"))
        return json_response(answer, headers=_NO_STORE)

    async def authorize(self, request: Request) -> Response:
        """Ask the policy engine: may the caller (or, with ``sso:authorize``, another subject) do this?"""
        who = require_caller(request, self.tokens)
        body = await parse_body(request, AuthorizeIn)
        subject = who.identity
        if body.subject and body.subject != subject.subject:
            if not {"sso:authorize", "sso:admin"} & set(subject.permissions):
                raise Forbidden("asking about another subject needs the permission 'sso:authorize'",
                                reason="missing_permission", details={"missing_permissions": ["sso:authorize"]})
            from meshkit.basis.context import Identity

            subject = Identity(body.subject)
        decision = await self.authz.decide(subject, body.permission, body.resource, body.context)
        return json_response(decision.to_dict())

    async def policy(self, request: Request) -> Response:
        """The whole policy (roles → grants), for services that run the engine themselves."""
        require_caller(request, self.tokens)
        return json_response((await self.authz.policy()).to_document(), headers={"cache-control": "max-age=5"})

    async def introspect_api_key(self, request: Request) -> Response:
        """Internal (not routed by the gateway): what an API key grants, or ``{"active": false}``."""
        raw = await request.body()
        form = await _form(request) if raw[:1] != b"{" else {}
        key = form.get("key") or form.get("token")
        if key is None:
            import orjson

            try:
                doc = orjson.loads(raw)
                key = doc.get("key") if isinstance(doc, dict) else None
            except orjson.JSONDecodeError:
                key = None
        if not isinstance(key, str):
            raise BadRequest("send {\"key\": \"mk_...\"}", reason="invalid_request")
        return json_response(await self.machines.introspect(key), headers=_NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode("utf-8", "replace")
    if raw.lstrip().startswith("{"):
        import orjson

        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the body is not valid JSON", reason="invalid_json") from exc
        form = {k: v for k, v in doc.items() if isinstance(v, str)} if isinstance(doc, dict) else {}
    else:
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    bad = sorted(k for k, v in form.items() if "\x00" in v)
    if bad:  # PostgreSQL refuses a NUL in text: a client_id holding one was a 500
        raise BadRequest(f"the field {bad[0]!r} holds a NUL character", reason="invalid_request")
    return form
