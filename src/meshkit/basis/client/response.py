"""What a :class:`~meshkit.basis.client.ServiceClient` call returns."""

from __future__ import annotations

from typing import Any

import orjson

from meshkit.basis.errors import from_response


class Response:
    """Another service's answer.

    ``status``; ``headers`` (a ``dict`` with lower-case names, built on first
    access; ``raw_headers`` keeps the wire list of byte pairs); ``body`` (bytes);
    ``instance`` (key of the instance that answered) and ``attempts`` (how many
    tries it took). A non-2xx answer is returned, not raised: call
    :meth:`raise_for_status` to turn it into the matching
    :class:`~meshkit.basis.errors.MeshkitError`.
    """

    __slots__ = ("_headers", "attempts", "body", "instance", "raw_headers", "status")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes,
                 instance: str = "", attempts: int = 1) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self.body = body
        self.instance = instance
        self.attempts = attempts
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Headers by lower-case name (the last value wins for duplicates)."""
        h = self._headers
        if h is None:
            h = self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers}
        return h

    def header(self, name: str) -> str | None:
        """One header's value (any case), or ``None``."""
        return self.headers.get(name.lower())

    @property
    def ok(self) -> bool:
        """True for 1xx-3xx statuses."""
        return self.status < 400

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (bad bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def raise_for_status(self) -> Response:
        """Raise the matching :class:`~meshkit.basis.errors.MeshkitError` for a 4xx/5xx; else return self."""
        if self.status >= 400:
            raise from_response(self.status, self.body)
        return self

    def __repr__(self) -> str:
        return f"<Response {self.status} from {self.instance or '?'} ({len(self.body)} bytes)>"
