"""The SSO's wire contract: request and answer bodies of its HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: The longest an API key may live (seconds): ten years. ``expires_in`` must be a date the
#: SSO can store; a larger (or infinite) value was a 500.
MAX_API_KEY_LIFETIME = 10 * 365 * 86400.0


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store or compare a NUL character in text: refuse it here, as a field error.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


#: A string the SSO stores or looks up: any text but NUL.
Text = Annotated[str, AfterValidator(_no_nul)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_In):
    """``POST /v1/signup`` and ``POST /v1/login``."""

    email: Text = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshIn(_In):
    """``POST /v1/refresh``."""

    refresh_token: str = Field(max_length=200)


class LogoutIn(_In):
    """``POST /v1/logout``: the refresh token of the session to end (optional with a bearer token)."""

    refresh_token: str | None = Field(default=None, max_length=200)


class PasswordChange(_In):
    """``POST /v1/password``."""

    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class TokenPair(BaseModel):
    """What login and refresh answer."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


class UserInfo(BaseModel):
    """``GET /v1/userinfo``."""

    sub: str
    email: str | None = None
    roles: list[str] = []
    permissions: list[str] = []
    tenant: str | None = None
    client_kind: str = "user"


class AuthorizeIn(_In):
    """``POST /v1/authorize``: may ``subject`` (default: the caller) do ``permission`` on ``resource``?"""

    permission: str = Field(max_length=128)
    resource: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    subject: Text | None = Field(default=None, max_length=40)


class Decision(BaseModel):
    """An explained decision (see ``meshkit.basis.policy.Decision``)."""

    allowed: bool
    permission: str
    reason: str
    explanation: str
    rule: dict[str, Any] | None = None
    failed: list[dict[str, Any]] = []


class ApiKeyIntrospection(BaseModel):
    """``POST /v1/apikeys/introspect`` (internal): ``active`` false for unknown, revoked or expired keys."""

    active: bool
    key_id: str | None = None
    subject: str | None = None
    permissions: list[str] = []
    roles: list[str] = []
    tenant: str | None = None
    exp: float | None = None
    name: str | None = None


class NewUser(_In):
    email: Text = Field(max_length=320)
    password: str = Field(max_length=1024)
    tenant: Text | None = Field(default=None, max_length=64)


class NewPermission(_In):
    name: Text = Field(max_length=128)
    description: Text = Field(default="", max_length=500)


class NewRole(_In):
    name: Text = Field(max_length=64)
    description: Text = Field(default="", max_length=500)


class NewGrant(_In):
    permission: Text = Field(max_length=128)
    condition: Text | None = Field(default=None, max_length=500)


class NewServiceAccount(_In):
    name: Text = Field(max_length=100)
    roles: list[Text] = Field(default_factory=list, max_length=100)
    tenant: Text | None = Field(default=None, max_length=64)


class NewApiKey(_In):
    name: Text = Field(min_length=1, max_length=100)
    subject: Text = Field(max_length=40)
    scopes: list[Text] = Field(default_factory=list, max_length=100)
    expires_in: float | None = Field(default=None, gt=0, le=MAX_API_KEY_LIFETIME,
                                     description="seconds until it expires (at most ten years); none = never")
    tenant: Text | None = Field(default=None, max_length=64)


class RotateKeys(_In):
    emergency: bool = False


__all__ = [
    "MAX_API_KEY_LIFETIME",
    "ApiKeyIntrospection",
    "AuthorizeIn",
    "Credentials",
    "Decision",
    "LogoutIn",
    "NewApiKey",
    "NewGrant",
    "NewPermission",
    "NewRole",
    "NewServiceAccount",
    "NewUser",
    "PasswordChange",
    "RefreshIn",
    "RotateKeys",
    "Text",
    "TokenPair",
    "UserInfo",
]
