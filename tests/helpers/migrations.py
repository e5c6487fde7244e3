"""A service's own Alembic migrations package, written to a temporary directory for a test."""

from __future__ import annotations

import textwrap
from pathlib import Path

_REVISION = '''\
{imports}

revision = "{revision}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


def write_migrations(
    root: Path, package: str, revision: str, *, imports: str, upgrade: str, downgrade: str,
    version_table: str | None = None,
) -> str:
    """Write the package ``package`` (dotted, below ``root``) with ``env.py`` and one revision; its name.

    ``upgrade`` and ``downgrade`` are the bodies of the revision's functions;
    without ``version_table`` the package declares none (the name is derived).
    The caller puts ``root`` on ``sys.path`` (and takes it off again).
    """
    pkg = root.joinpath(*package.split("."))
    (pkg / "versions").mkdir(parents=True)
    for parent in list(pkg.parents)[: package.count(".")]:
        (parent / "__init__.py").write_text("")
    init = f'VERSION_TABLE = "{version_table}"\n' if version_table else '"""Migrations (no VERSION_TABLE)."""\n'
    (pkg / "__init__.py").write_text(init)
    (pkg / "env.py").write_text("from meshkit.basis.storage.migrate import run_env\n\nrun_env()\n")
    (pkg / "versions" / f"{revision}_revision.py").write_text(_REVISION.format(
        imports=textwrap.dedent(imports).strip(), revision=revision,
        upgrade=textwrap.indent(textwrap.dedent(upgrade).strip(), "    "),
        downgrade=textwrap.indent(textwrap.dedent(downgrade).strip(), "    "),
    ))
    return package


__all__ = ["write_migrations"]
