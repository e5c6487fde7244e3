"""Password hashing with argon2id (argon2-cffi), off the event loop.

Default parameters are OWASP's minimum for argon2id: memory 19 MiB, 2
iterations, 1 lane — about 20-40 ms per hash on one core of a 2020s server.
Each hash holds its memory while it runs, so at most ``max_concurrent`` run at
once (one per CPU by default); the rest queue. A stored hash made with other
parameters still verifies, and :meth:`needs_rehash` tells the login to upgrade it.
"""

from __future__ import annotations

import asyncio
import os

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2Hasher:
    """:class:`~meshkit.sso.app.ports.PasswordHasher` with argon2id."""

    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19 * 1024, parallelism: int = 1,
                 max_concurrent: int = 0) -> None:
        self._ph = _Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                           hash_len=32, salt_len=16, type=Type.ID)
        self._slots = asyncio.Semaphore(max_concurrent or os.cpu_count() or 1)
        self.parameters = {"algorithm": "argon2id", "time_cost": time_cost, "memory_kib": memory_kib,
                           "parallelism": parallelism}

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._ph.hash, password)

    async def verify(self, encoded: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self.verify_now, encoded, password)

    def verify_now(self, encoded: str, password: str) -> bool:
        """Blocking verify (for benchmarks and threads)."""
        try:
            return self._ph.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        try:
            return self._ph.check_needs_rehash(encoded)
        except InvalidHashError:
            return True
