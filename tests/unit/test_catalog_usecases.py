"""Catalog use cases over the in-memory repository (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meshkit.basis.errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unprocessable
from meshkit.services.catalog.adapters import MemoryProductRepository
from meshkit.services.catalog.app import ProductFilter, Products
from meshkit.services.catalog.domain import Draft, InvalidProduct, ProductChanges


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def repo():
    return MemoryProductRepository()


@pytest.fixture
def products(repo):
    return Products(repo, clock=Clock())


def draft(sku: str, amount: str = "10.00", currency: str = "EUR", name: str | None = None) -> Draft:
    return Draft(name=name or f"Product {sku}", sku=sku, price_amount=amount, price_currency=currency)


async def test_create_then_get(products):
    created = await products.create(draft("A-1", "9.5"))
    assert created.version == 1 and created.price.amount == Decimal("9.50")
    assert await products.get(created.id) == created


async def test_get_unknown_is_not_found(products):
    with pytest.raises(NotFound) as info:
        await products.get("nope")
    assert info.value.reason == "product_not_found"


async def test_duplicate_sku_is_conflict_and_first_product_kept(products, repo):
    first = await products.create(draft("A-1"))
    with pytest.raises(Conflict) as info:
        await products.create(draft("A-1", name="Another"))
    assert info.value.reason == "duplicate_sku" and info.value.details["loc"] == "sku"
    page = await products.list(ProductFilter())
    assert page.items == [first]


async def test_invalid_draft_stores_nothing(products):
    with pytest.raises(InvalidProduct):
        await products.create(draft("A-1", "-3"))
    assert (await products.list(ProductFilter())).items == []


async def test_list_pages_through_everything_in_creation_order(products):
    made = [await products.create(draft(f"S-{i:02d}")) for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = await products.list(ProductFilter(), cursor=cursor, limit=3)
        seen += page.items
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == made and pages == 3


async def test_exact_page_has_no_next_cursor(products):
    for i in range(3):
        await products.create(draft(f"S-{i}"))
    assert (await products.list(ProductFilter(), limit=3)).next_cursor is None


async def test_filters(products):
    await products.create(draft("E-1", "5.00", "EUR", name="Blue mug"))
    await products.create(draft("E-2", "15.00", "EUR", name="Red plate"))
    await products.create(draft("U-1", "10.00", "USD", name="BLUE bowl"))
    names = lambda page: sorted(p.name for p in page.items)  # noqa: E731
    assert names(await products.list(ProductFilter(currency="EUR"))) == ["Blue mug", "Red plate"]
    assert names(await products.list(ProductFilter(q="blue"))) == ["BLUE bowl", "Blue mug"]
    assert names(await products.list(ProductFilter(min_price=Decimal(10)))) == ["BLUE bowl", "Red plate"]
    assert names(await products.list(ProductFilter(max_price=Decimal(10)))) == ["BLUE bowl", "Blue mug"]
    assert names(await products.list(ProductFilter(sku="E-2"))) == ["Red plate"]
    assert names(await products.list(ProductFilter(currency="EUR", q="mug", max_price=Decimal(5)))) == ["Blue mug"]


async def test_cursor_cannot_be_reused_with_other_filters(products):
    for i in range(3):
        await products.create(draft(f"S-{i}"))
    page = await products.list(ProductFilter(currency="EUR"), limit=1)
    with pytest.raises(BadRequest):
        await products.list(ProductFilter(currency="USD"), cursor=page.next_cursor, limit=1)


@pytest.mark.parametrize("limit", [0, -1, 201])
async def test_limit_bounds(products, limit):
    with pytest.raises(Unprocessable) as info:
        await products.list(ProductFilter(), limit=limit)
    assert info.value.details[0]["loc"] == "limit"


@pytest.mark.parametrize(
    ("where", "loc"),
    [
        (ProductFilter(min_price=Decimal(5), max_price=Decimal(1)), "min_price"),
        (ProductFilter(min_price=Decimal("-1")), "min_price"),
        (ProductFilter(max_price=Decimal("0.00001")), "max_price"),
    ],
)
async def test_bad_price_filters(products, where, loc):
    with pytest.raises(Unprocessable) as info:
        await products.list(where)
    assert info.value.details[0]["loc"] == loc


async def test_update_with_current_version(products):
    p = await products.create(draft("A-1"))
    q = await products.update(p.id, ProductChanges(name="New"), expected_version=1)
    assert (q.name, q.version) == ("New", 2)
    assert await products.get(p.id) == q


async def test_update_with_stale_version_is_precondition_failed(products):
    p = await products.create(draft("A-1"))
    await products.update(p.id, ProductChanges(name="New"))
    with pytest.raises(PreconditionFailed) as info:
        await products.update(p.id, ProductChanges(name="Newer"), expected_version=1)
    assert info.value.reason == "version_mismatch"
    assert info.value.details == {"expected": 1, "current": 2}
    assert (await products.get(p.id)).name == "New"


async def test_update_to_taken_sku_is_conflict_and_nothing_changes(products):
    a = await products.create(draft("A-1"))
    await products.create(draft("B-1"))
    with pytest.raises(Conflict):
        await products.update(a.id, ProductChanges(sku="B-1", name="Renamed"))
    assert await products.get(a.id) == a


async def test_update_unknown_is_not_found(products):
    with pytest.raises(NotFound):
        await products.update("nope", ProductChanges(name="x"))


class RacingRepository(MemoryProductRepository):
    """Another writer changes the product between each read and write, ``races`` times."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.tick = itertools.count(1)

    async def replace(self, product, *, expected_version):
        if self.races > 0:
            self.races -= 1
            stored = self._rows[product.id]
            await super().replace(
                stored.__class__(**{**_fields(stored), "description": f"by other {next(self.tick)}",
                                    "version": stored.version + 1}),
                expected_version=stored.version,
            )
        return await super().replace(product, expected_version=expected_version)


def _fields(p):
    return {f: getattr(p, f) for f in p.__slots__}


async def test_unconditional_update_reapplies_on_the_newer_state():
    repo = RacingRepository(races=2)
    products = Products(repo, clock=Clock())
    p = await products.create(draft("A-1"))
    q = await products.update(p.id, ProductChanges(name="Mine"))
    # Both of the other writer's changes are kept, ours applied on top: no lost update.
    assert (q.name, q.description, q.version) == ("Mine", "by other 2", 4)


async def test_conditional_update_loses_the_race_with_412():
    repo = RacingRepository(races=1)
    products = Products(repo, clock=Clock())
    p = await products.create(draft("A-1"))
    with pytest.raises(PreconditionFailed) as info:
        await products.update(p.id, ProductChanges(name="Mine"), expected_version=1)
    assert info.value.details == {"expected": 1, "current": 2}


async def test_endless_contention_gives_up_with_conflict():
    repo = RacingRepository(races=100)
    products = Products(repo, clock=Clock())
    p = await products.create(draft("A-1"))
    with pytest.raises(Conflict) as info:
        await products.update(p.id, ProductChanges(name="Mine"))
    assert info.value.reason == "contended"


async def test_delete(products):
    p = await products.create(draft("A-1"))
    with pytest.raises(PreconditionFailed):
        await products.delete(p.id, expected_version=7)
    await products.delete(p.id, expected_version=1)
    with pytest.raises(NotFound):
        await products.get(p.id)
    with pytest.raises(NotFound):
        await products.delete(p.id)
    with pytest.raises(NotFound):
        await products.delete(p.id, expected_version=1)
