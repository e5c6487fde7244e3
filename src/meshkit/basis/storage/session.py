"""The session factory a repository holds: what :func:`~meshkit.basis.storage.transaction` opens
transactions from (``async with transaction(sessions) as tx:``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session maker bound to ``engine``; pass it to :func:`~meshkit.basis.storage.transaction`.

    ``expire_on_commit=False``: objects stay readable after commit, which is what
    async code needs (no lazy reload outside the session) if you open ORM
    sessions from it yourself.
    """
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


__all__ = ["session_factory"]
