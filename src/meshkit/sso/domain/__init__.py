"""The SSO's pure rules: password policy, e-mail normalisation, login throttling, the records it keeps."""

from meshkit.sso.domain.passwords import (
    MAX_LENGTH,
    MIN_LENGTH,
    common_passwords,
    normalise_email,
    normalise_password,
    password_problems,
)
from meshkit.sso.domain.records import (
    ApiKey,
    AuditEntry,
    RefreshToken,
    ServiceAccount,
    SigningKey,
    User,
    new_id,
)
from meshkit.sso.domain.throttle import Throttle, ThrottleRule

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH",
    "ApiKey",
    "AuditEntry",
    "RefreshToken",
    "ServiceAccount",
    "SigningKey",
    "Throttle",
    "ThrottleRule",
    "User",
    "common_passwords",
    "new_id",
    "normalise_email",
    "normalise_password",
    "password_problems",
]
