"""The SSO's stores on SQL (SQLite or PostgreSQL), one module per store, SQLAlchemy Core."""

from meshkit.sso.adapters.sql.audit import SqlAudit, write_audit
from meshkit.sso.adapters.sql.authz import SqlAuthz
from meshkit.sso.adapters.sql.keys import SqlKeys
from meshkit.sso.adapters.sql.machines import SqlMachines
from meshkit.sso.adapters.sql.tokens import SqlTokens
from meshkit.sso.adapters.sql.users import SqlUsers

__all__ = ["SqlAudit", "SqlAuthz", "SqlKeys", "SqlMachines", "SqlTokens", "SqlUsers", "write_audit"]
