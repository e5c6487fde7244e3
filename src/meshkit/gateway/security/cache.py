"""Verified tokens, remembered until they expire: the common path of authentication.

Keyed by the raw token string, so a hit costs one dict lookup and one clock
comparison. An entry is dropped the moment its token's ``exp`` has passed — the
cache never answers for an expired token, whatever the verifier's leeway.
Bounded: least recently used entries go first.
"""

from __future__ import annotations

from collections import OrderedDict

from meshkit.basis.context import Identity


class TokenCache:
    """A bounded LRU of ``token -> (exp, Identity)``."""

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._entries: OrderedDict[str, tuple[float, Identity]] = OrderedDict()

    def get(self, token: str, now: float) -> Identity | None:
        """The identity of ``token`` if cached and not expired at ``now``."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry[0]:
            self._entries.pop(token, None)
            return None
        self._entries.move_to_end(token)
        return entry[1]

    def put(self, token: str, identity: Identity, exp: float, now: float) -> None:
        """Remember ``identity`` for ``token`` until ``exp`` (nothing if already expired)."""
        if exp <= now:
            return
        self._entries[token] = (exp, identity)
        self._entries.move_to_end(token)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        """Forget ``token`` (after its revocation was seen)."""
        self._entries.pop(token, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
