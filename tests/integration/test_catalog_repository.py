"""The product repository contract, run against every backend: memory, SQLite, PostgreSQL.

Plus what only a real database can show: the optimistic-concurrency race
(two updates from the same version, exactly one wins) and no lost updates.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meshkit.basis.errors import Conflict, PreconditionFailed
from meshkit.basis.storage import migrate, session_factory
from meshkit.basis.storage.testing import scratch_engine
from meshkit.services.catalog.adapters import MIGRATIONS, MemoryProductRepository, SqlProductRepository
from meshkit.services.catalog.app import ProductFilter, Products, new_id
from meshkit.services.catalog.domain import Draft, Money, Product, ProductChanges

T0 = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request, tmp_path):
    """``None`` for the in-memory repository, else the database URL."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path}/catalog.db" if request.param == "sqlite" else None


@pytest.fixture
async def repo(backend):
    if backend is None:
        yield MemoryProductRepository()
        return
    async with scratch_engine(backend) as engine:
        await migrate(engine, MIGRATIONS)
        yield SqlProductRepository(session_factory(engine))


def product(sku: str, amount: str = "10.00", currency: str = "EUR", name: str | None = None, **kw) -> Product:
    money = Money.of(amount, currency)
    return Product(
        id=kw.pop("id", None) or new_id(), name=name or f"Product {sku}", description=kw.pop("description", ""),
        price=money, sku=sku, version=kw.pop("version", 1), created_at=T0, updated_at=T0,
    )


async def test_add_and_get_round_trip_exactly(repo):
    p = product("RT-1", "1234567.8901", "CLF", description="ünïcode ✓ description")
    await repo.add(p)
    got = await repo.get(p.id)
    assert got == p
    assert got.price.amount == Decimal("1234567.8901") and got.created_at.tzinfo is not None
    assert await repo.get(new_id()) is None


@pytest.mark.parametrize(("amount", "currency"), [("0", "JPY"), ("999999999999.99", "EUR"), ("0.001", "BHD")])
async def test_prices_at_the_edges_are_exact(repo, amount, currency):
    p = product("EDGE", amount, currency)
    await repo.add(p)
    assert (await repo.get(p.id)).price == Money.of(amount, currency)


async def test_duplicate_sku_is_conflict_and_nothing_written(repo):
    first = product("DUP")
    await repo.add(first)
    second = product("DUP", name="Other")
    with pytest.raises(Conflict) as info:
        await repo.add(second)
    assert info.value.reason == "duplicate_sku"
    assert await repo.get(second.id) is None
    assert await repo.get(first.id) == first


async def test_list_filters_order_and_paging(repo):
    made = [
        product("L-1", "5.00", "EUR", name="Blue mug"),
        product("L-2", "15.00", "EUR", name="Red plate"),
        product("L-3", "10.00", "USD", name="blue BOWL"),
        product("L-4", "10.00", "EUR", name="100% cotton_towel"),
    ]
    for p in made:
        await repo.add(p)

    async def skus(where: ProductFilter, **kw) -> list[str]:
        return [p.sku for p in await repo.list(where, after=kw.get("after"), limit=kw.get("limit", 50))]

    assert await skus(ProductFilter()) == ["L-1", "L-2", "L-3", "L-4"]
    assert await skus(ProductFilter(), after=made[1].id, limit=1) == ["L-3"]
    assert await skus(ProductFilter(currency="USD")) == ["L-3"]
    assert await skus(ProductFilter(q="BLUE")) == ["L-1", "L-3"]
    assert await skus(ProductFilter(q="100%")) == ["L-4"]  # % and _ are literal, not wildcards
    assert await skus(ProductFilter(q="ue_m")) == []
    assert await skus(ProductFilter(min_price=Decimal("10"), max_price=Decimal("10"))) == ["L-3", "L-4"]
    assert await skus(ProductFilter(min_price=Decimal("10.0001"))) == ["L-2"]
    assert await skus(ProductFilter(max_price=Decimal("1e30"))) == ["L-1", "L-2", "L-3", "L-4"]
    assert await skus(ProductFilter(sku="L-2", currency="EUR")) == ["L-2"]


async def test_replace_is_conditional_on_the_version(repo):
    p = product("R-1")
    await repo.add(p)
    v2 = replace(p, name="Two", version=2, updated_at=T0 + timedelta(seconds=1))
    assert await repo.replace(v2, expected_version=1) is True
    assert await repo.get(p.id) == v2
    stale = replace(p, name="Stale", version=2)
    assert await repo.replace(stale, expected_version=1) is False
    assert (await repo.get(p.id)).name == "Two"
    assert await repo.replace(replace(p, id=new_id(), version=2), expected_version=1) is False  # gone / never was


async def test_replace_to_a_taken_sku_is_conflict_and_changes_nothing(repo):
    a, b = product("A"), product("B")
    await repo.add(a)
    await repo.add(b)
    with pytest.raises(Conflict) as info:
        await repo.replace(replace(a, sku="B", name="Renamed", version=2), expected_version=1)
    assert info.value.reason == "duplicate_sku"
    assert await repo.get(a.id) == a


async def test_remove(repo):
    p = product("D-1")
    await repo.add(p)
    assert await repo.remove(p.id, expected_version=2) is False
    assert await repo.get(p.id) == p
    assert await repo.remove(p.id, expected_version=1) is True
    assert await repo.remove(p.id) is False
    assert await repo.get(p.id) is None


async def test_two_updates_from_the_same_version_exactly_one_wins(repo):
    products = Products(repo)
    p = await products.create(product_draft("RACE"))
    results = await asyncio.gather(
        *(products.update(p.id, ProductChanges(name=f"writer {i}"), expected_version=1) for i in range(2)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert isinstance(losers[0], PreconditionFailed) and losers[0].details == {"expected": 1, "current": 2}
    stored = await products.get(p.id)
    assert stored.version == 2 and stored.name == winners[0].name


async def test_many_racing_writers_at_one_version_one_wins_on_the_database(repo):
    products = Products(repo)
    p = await products.create(product_draft("RACE-N"))
    results = await asyncio.gather(
        *(products.update(p.id, ProductChanges(price_amount=str(i + 1)), expected_version=1) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, PreconditionFailed) for r in results if isinstance(r, BaseException))
    assert (await products.get(p.id)).version == 2


async def test_unconditional_concurrent_updates_lose_nothing(repo):
    # Each writer changes a different field set; without a precondition every
    # change must land (re-applied on the newer state), one version each.
    products = Products(repo)
    p = await products.create(product_draft("MANY"))
    changes = [ProductChanges(name="renamed"), ProductChanges(description="described"),
               ProductChanges(price_amount="42"), ProductChanges(sku="MANY-2")]
    await asyncio.gather(*(products.update(p.id, c) for c in changes))
    final = await products.get(p.id)
    assert (final.name, final.description, final.price.amount, final.sku) == (
        "renamed", "described", Decimal("42.00"), "MANY-2")
    assert final.version == 1 + len(changes)


def product_draft(sku: str) -> Draft:
    return Draft(name=f"Product {sku}", sku=sku, price_amount="10", price_currency="EUR")
