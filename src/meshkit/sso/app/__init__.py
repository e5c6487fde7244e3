"""SSO use cases: accounts, sessions and tokens, signing keys, authorisation, machines."""

from meshkit.sso.app.accounts import Accounts, invalid_credentials
from meshkit.sso.app.authz import ADMIN_PERMISSION, ADMIN_ROLE, Authz
from meshkit.sso.app.keyring import KeyRing
from meshkit.sso.app.machines import Machines
from meshkit.sso.app.sessions import Sessions
from meshkit.sso.app.tokens import Tokens, token_hash

__all__ = [
    "ADMIN_PERMISSION",
    "ADMIN_ROLE",
    "Accounts",
    "Authz",
    "KeyRing",
    "Machines",
    "Sessions",
    "Tokens",
    "invalid_credentials",
    "token_hash",
]
