"""Dead letters: list, inspect and replay what the consumers gave up on.

A dead letter is a message on the ``DLQ`` stream, subject
``dlq.<consumer>.<original subject>``, whose JSON body holds ``consumer``,
``stream``, ``subject``, ``stream_seq``, ``deliveries``, ``error``,
``failed_at`` and ``event`` (the original CloudEvent). ``meshkit dlq`` calls
these functions; so can an admin endpoint.

Replaying republishes the original event (same event id, so inbox-guarded
consumers that already handled it skip it) on its original subject and removes
the dead letter. A letter that would not fit in a NATS message with the event
in it (an event close to ``max_payload``) leaves it out (``too_large``);
replaying it republishes the original message, read back from its stream. Every consumer of that subject sees it again: consumers are
expected to be idempotent (see :mod:`meshkit.basis.inbox`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from meshkit.basis.bus.streams import DLQ, DLQ_STREAM, ensure_stream
from meshkit.basis.errors import NotFound


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter: its sequence in the ``DLQ`` stream and what it says."""

    seq: int
    consumer: str
    subject: str
    deliveries: int
    error: str
    failed_at: float
    event: dict[str, Any] | None
    raw: dict[str, Any]

    @property
    def event_id(self) -> str | None:
        return (self.event or {}).get("id") or self.raw.get("event_id")

    @property
    def event_type(self) -> str | None:
        return (self.event or {}).get("type") or self.raw.get("event_type")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored letter plus its ``seq``)."""
        return {"seq": self.seq, **self.raw}


#: Bytes kept free for a letter's headers (``Nats-Msg-Id``) under the server's ``max_payload``.
_HEADER_ROOM = 1024


def letter_body(js: JetStreamContext, letter: dict[str, Any]) -> bytes:
    """``letter`` as JSON; without its ``event``/``raw`` (``too_large``: true) when it would not fit in a message.

    The original is still in its stream at ``stream_seq``: :func:`replay_dead_letter` reads it from there.
    """
    body = orjson.dumps(letter)
    nc = getattr(js, "_nc", None)
    limit = (getattr(nc, "max_payload", 0) or 1024 * 1024) - _HEADER_ROOM
    if len(body) <= limit:
        return body
    event = letter.get("event") or {}
    return orjson.dumps({**letter, "event": None, "raw": None, "too_large": True, "size": len(body),
                         "event_id": event.get("id"), "event_type": event.get("type")})


def _letter(seq: int, data: bytes) -> DeadLetter:
    raw = orjson.loads(data)
    return DeadLetter(
        seq=seq,
        consumer=raw.get("consumer", ""),
        subject=raw.get("subject", ""),
        deliveries=int(raw.get("deliveries", 0)),
        error=raw.get("error", ""),
        failed_at=float(raw.get("failed_at", 0.0)),
        event=raw.get("event"),
        raw=raw,
    )


async def list_dead_letters(js: JetStreamContext, *, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, oldest first (only ``consumer``'s when given)."""
    await ensure_stream(js, DLQ)
    subject = f"{DLQ.subjects[0][:-1]}{consumer}.>" if consumer else None
    out: list[DeadLetter] = []
    seq = 1
    while len(out) < limit:
        try:
            msg = await js.get_msg(DLQ_STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            break
        out.append(_letter(msg.seq, msg.data or b"{}"))
        seq = msg.seq + 1
    return out


async def get_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter:
    """The dead letter at ``seq``; :class:`NotFound` when there is none (already replayed or purged)."""
    try:
        msg = await js.get_msg(DLQ_STREAM, seq)
    except NotFoundError as exc:
        raise NotFound(
            f"no dead letter with seq {seq}: list them with `meshkit dlq list`",
            reason="dead_letter_not_found",
            details={"seq": seq},
        ) from exc
    return _letter(msg.seq, msg.data or b"{}")


async def replay_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter:
    """Republish the original event of dead letter ``seq`` on its subject, then delete the letter."""
    letter = await get_dead_letter(js, seq)
    if letter.raw.get("too_large"):  # the letter could not hold the event: the stream still does
        try:
            original = await js.get_msg(letter.raw["stream"], letter.raw["stream_seq"])
        except NotFoundError as exc:
            raise NotFound(f"dead letter {seq}: its event was too large to keep in the letter, and its stream "
                           f"{letter.raw['stream']} no longer holds it (seq {letter.raw['stream_seq']})",
                           reason="dead_letter_unreadable", details={"seq": seq}) from exc
        await js.publish(letter.subject, original.data or b"", headers={"Nats-Msg-Id": f"{letter.event_id}-replay-{seq}"})
        await js.delete_msg(DLQ_STREAM, seq)
        return letter
    if letter.event is None:
        raise NotFound(
            f"dead letter {seq} holds no readable event (it could not be decoded); inspect it with `meshkit dlq show {seq}`",
            reason="dead_letter_unreadable",
            details={"seq": seq},
        )
    # A new Nats-Msg-Id: the original one may still be in the duplicate window.
    await js.publish(
        letter.subject, orjson.dumps(letter.event), headers={"Nats-Msg-Id": f"{letter.event_id}-replay-{seq}"}
    )
    await js.delete_msg(DLQ_STREAM, seq)
    return letter


__all__ = ["DeadLetter", "get_dead_letter", "list_dead_letters", "replay_dead_letter"]
