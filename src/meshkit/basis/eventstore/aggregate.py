"""The event-sourced aggregate: commands decide, events mutate.

An aggregate's state is never written directly. A command is checked against
the current state and produces events; :meth:`Aggregate.apply` folds each
event into the state. Loading replays the stored events through the same
``apply``, so "what happened" is the only source of truth::

    class Deposited(Event):
        type_name: ClassVar[str] = "bank.account.deposited"
        amount: int

    class Deposit(Command):
        type_name: ClassVar[str] = "bank.account.deposit"
        amount: int

    class Account(Aggregate):
        aggregate_type = "bank.account"

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.balance = 0

        @handles(Deposit)
        def _deposit(self, command: Deposit) -> Deposited:
            if command.amount <= 0:
                raise Unprocessable("a deposit must be positive", reason="bad_amount")
            return Deposited(amount=command.amount)       # decide, don't mutate

        @applies(Deposited)
        def _deposited(self, event: Deposited) -> None:
            self.balance += event.amount                    # mutate, never refuse

    account = Account("a-1")
    account.handle(Deposit(amount=10))     # account.pending_events == [Deposited(amount=10)]

Command methods may also call :meth:`Aggregate.record` directly instead of
going through :meth:`Aggregate.handle`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel

from meshkit.basis.bus.envelope import Event
from meshkit.basis.errors import ConfigError, Internal

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute names the base class owns: never part of a snapshot's state.
_OWN = frozenset({"id", "version", "pending_events"})


def applies(event_type: type[Event]) -> Callable[[F], F]:
    """Mark a method as the one that folds ``event_type`` into the state."""

    def mark(fn: F) -> F:
        fn.__meshkit_applies__ = event_type  # type: ignore[attr-defined]
        return fn

    return mark


def handles(command_type: type[BaseModel]) -> Callable[[F], F]:
    """Mark a method as the decision for ``command_type``: it returns the event(s) to record."""

    def mark(fn: F) -> F:
        fn.__meshkit_handles__ = command_type  # type: ignore[attr-defined]
        return fn

    return mark


class Aggregate:
    """Base of event-sourced aggregates (see the module docstring).

    ``version`` counts every event applied, the unsaved ones included;
    ``pending_events`` are those recorded since the last load or save. Class
    variables: ``aggregate_type`` (stored with each event), ``snapshot_schema``
    (bump it when the state's shape changes: older snapshots are then ignored
    and the aggregate is rebuilt from its events).
    """

    aggregate_type: ClassVar[str] = ""
    snapshot_schema: ClassVar[int] = 1
    _appliers: ClassVar[dict[type[Event], Callable[..., None]]] = {}
    _handlers: ClassVar[dict[type[BaseModel], Callable[..., Any]]] = {}
    _event_types: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("aggregate_type"):
            cls.aggregate_type = cls.__name__.lower()
        appliers = dict(cls._appliers)
        handlers = dict(cls._handlers)
        for attr in vars(cls).values():
            event_type = getattr(attr, "__meshkit_applies__", None)
            if event_type is not None:
                if not event_type.type_name:
                    raise ConfigError(f"{event_type.__qualname__} needs a type_name to be stored")
                appliers[event_type] = attr
            command_type = getattr(attr, "__meshkit_handles__", None)
            if command_type is not None:
                handlers[command_type] = attr
        cls._appliers = appliers
        cls._handlers = handlers
        cls._event_types = {t.type_name: t for t in appliers}

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self.pending_events: list[Event] = []

    @property
    def saved_version(self) -> int:
        """The version the store holds: ``version`` minus the pending events."""
        return self.version - len(self.pending_events)

    def handle(self, command: BaseModel) -> list[Event]:
        """Run the ``@handles`` decision for ``command`` and record the events it returns."""
        fn = _lookup(type(command), self._handlers)
        if fn is None:
            raise ConfigError(f"{type(self).__name__} has no @handles method for {type(command).__qualname__}")
        produced = fn(self, command)
        if produced is None:
            return []
        events = [produced] if isinstance(produced, Event) else list(produced)
        for event in events:
            self.record(event)
        return events

    def record(self, event: Event) -> None:
        """Apply a new event and keep it for the next save."""
        self.apply(event)
        self.pending_events.append(event)

    def apply(self, event: Event) -> None:
        """Fold one event into the state (via its ``@applies`` method) and count it."""
        fn = _lookup(type(event), self._appliers)
        if fn is None:
            raise ConfigError(f"{type(self).__name__} has no @applies method for {type(event).__qualname__}")
        fn(self, event)
        self.version += 1

    def replay(self, events: Iterable[Event]) -> None:
        """Apply already-stored events (they do not become pending)."""
        for event in events:
            self.apply(event)

    @classmethod
    def decode(cls, event_type: str, data: dict[str, Any]) -> Event:
        """Rebuild a stored event of this aggregate from its type name and JSON data."""
        model = cls._event_types.get(event_type)
        if model is None:
            raise Internal(
                f"{cls.__name__} cannot read stored event type {event_type!r}: "
                "keep an @applies method (or an upcaster) for every type ever stored",
                reason="unknown_event_type",
                details={"aggregate_type": cls.aggregate_type, "event_type": event_type},
            )
        return model.model_validate(data)

    def snapshot_state(self) -> dict[str, Any]:
        """The state to snapshot: every public attribute but ``id``/``version``/``pending_events``.

        It is stored as JSON; override this and :meth:`restore_state` when the
        state holds values JSON does not round-trip (sets, datetimes, models).
        """
        return {k: v for k, v in vars(self).items() if k not in _OWN and not k.startswith("_")}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Set the state from :meth:`snapshot_state`'s output."""
        for key, value in state.items():
            setattr(self, key, value)

    @classmethod
    def from_snapshot(cls, id: str, version: int, state: dict[str, Any]) -> Self:
        """A new instance at ``version`` with ``state`` restored."""
        aggregate = cls(id)
        aggregate.restore_state(state)
        aggregate.version = version
        return aggregate

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, version={self.version}, pending={len(self.pending_events)})"


def _lookup(kind: type, table: dict[Any, Callable[..., Any]]) -> Callable[..., Any] | None:
    for base in kind.__mro__:
        fn = table.get(base)
        if fn is not None:
            return fn
    return None


__all__ = ["Aggregate", "applies", "handles"]
