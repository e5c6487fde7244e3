"""The aggregate base: commands decide, events mutate, pending events, decoding, snapshots."""

from __future__ import annotations

from typing import ClassVar

import pytest

from meshkit.basis.bus import Event
from meshkit.basis.errors import ConfigError, Internal, Unprocessable
from meshkit.basis.eventstore import Aggregate, applies, handles
from meshkit.basis.eventstore.tables import event_tables


class Added(Event):
    type_name: ClassVar[str] = "esunit.cart.added"
    sku: str
    qty: int


class Removed(Event):
    type_name: ClassVar[str] = "esunit.cart.removed"
    sku: str


class Add(Event):
    type_name: ClassVar[str] = "esunit.cart.add"
    sku: str
    qty: int


class Clear(Event):
    type_name: ClassVar[str] = "esunit.cart.clear"


class Cart(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.lines: dict[str, int] = {}

    @handles(Add)
    def _add(self, command: Add) -> Added:
        if command.qty <= 0:
            raise Unprocessable("quantity must be positive", reason="bad_quantity")
        return Added(sku=command.sku, qty=command.qty)

    @handles(Clear)
    def _clear(self, command: Clear) -> list[Removed]:
        return [Removed(sku=sku) for sku in sorted(self.lines)]

    @applies(Added)
    def _added(self, event: Added) -> None:
        self.lines[event.sku] = self.lines.get(event.sku, 0) + event.qty

    @applies(Removed)
    def _removed(self, event: Removed) -> None:
        self.lines.pop(event.sku, None)


def test_commands_produce_events_and_apply_mutates_state():
    cart = Cart("c1")
    assert cart.aggregate_type == "cart"  # derived from the class name
    assert cart.handle(Add(sku="a", qty=2)) == [Added(sku="a", qty=2)]
    cart.handle(Add(sku="b", qty=1))
    cart.handle(Add(sku="a", qty=1))
    assert cart.lines == {"a": 3, "b": 1}
    assert (cart.version, cart.saved_version, len(cart.pending_events)) == (3, 0, 3)
    removed = cart.handle(Clear())
    assert [e.sku for e in removed] == ["a", "b"] and cart.lines == {} and cart.version == 5


def test_a_refused_command_records_nothing():
    cart = Cart("c2")
    with pytest.raises(Unprocessable):
        cart.handle(Add(sku="a", qty=0))
    assert cart.version == 0 and cart.pending_events == []


def test_replay_rebuilds_the_same_state_without_pending_events():
    cart = Cart("c3")
    for sku, qty in [("a", 1), ("b", 2), ("a", 5)]:
        cart.handle(Add(sku=sku, qty=qty))
    copy = Cart("c3")
    copy.replay(Cart.decode(type(e).type_name, e.model_dump(mode="json")) for e in cart.pending_events)
    assert copy.lines == cart.lines and copy.version == 3 and copy.pending_events == []


def test_snapshot_state_round_trips_and_excludes_bookkeeping():
    cart = Cart("c4")
    cart.handle(Add(sku="z", qty=9))
    state = cart.snapshot_state()
    assert state == {"lines": {"z": 9}}
    restored = Cart.from_snapshot("c4", 1, state)
    assert restored.lines == {"z": 9} and restored.version == 1 and restored.pending_events == []


def test_unknown_event_types_and_missing_handlers_fail_clearly():
    with pytest.raises(Internal) as info:
        Cart.decode("esunit.cart.exploded", {})
    assert info.value.reason == "unknown_event_type" and "@applies" in info.value.message

    class Unrelated(Event):
        type_name: ClassVar[str] = "esunit.other.thing"

    cart = Cart("c5")
    with pytest.raises(ConfigError, match="no @handles"):
        cart.handle(Unrelated())
    with pytest.raises(ConfigError, match="no @applies"):
        cart.apply(Unrelated())


def test_an_event_without_a_type_name_cannot_be_applied_by_an_aggregate():
    class Nameless(Event):
        x: int = 0

    with pytest.raises(ConfigError, match="type_name"):

        class Bad(Aggregate):
            @applies(Nameless)
            def _on(self, event: Nameless) -> None:
                pass


def test_subclasses_inherit_appliers():
    class BigCart(Cart):
        aggregate_type = "esunit.bigcart"

    big = BigCart("b1")
    big.handle(Add(sku="a", qty=1))
    assert big.lines == {"a": 1} and BigCart.aggregate_type == "esunit.bigcart"


def test_table_prefix_is_checked_and_names_follow_it():
    tables = event_tables("orders")
    assert (tables.events.name, tables.snapshots.name) == ("orders_events", "orders_snapshots")
    assert event_tables("orders") is tables
    with pytest.raises(ValueError):
        event_tables("1bad-prefix")
