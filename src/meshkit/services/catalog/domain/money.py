"""Money: an exact decimal amount in an ISO 4217 currency.

The amount is a :class:`~decimal.Decimal` (never a float), not negative, below
:data:`MAX_AMOUNT`, with no more decimal places than the currency has minor
units (EUR 19.999 is refused; JPY has none). Amounts are kept at exactly the
currency's places, so ``Money.of("19.9", "EUR").amount == Decimal("19.90")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from meshkit.services.catalog.domain.rules import Problem, raise_if

#: Exclusive upper bound of an amount: prices are stored exactly as integers of 1/10⁴.
MAX_AMOUNT = Decimal(10) ** 12

_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP "
    "LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR "
    "NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR "
    "ZMW ZWG"
)
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"

#: Active ISO 4217 currency codes and their number of minor-unit digits.
CURRENCIES: dict[str, int] = {
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(_FOUR.split(), 4),
}


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency. Build it with :meth:`of`, which checks the rules."""

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str, *, field: str = "price") -> Money:
        """Validated money, or :class:`~.rules.InvalidProduct` naming ``field.amount`` / ``field.currency``."""
        money, problems = cls.check(amount, currency, field=field)
        raise_if(problems)
        assert money is not None
        return money

    @classmethod
    def check(
        cls, amount: Decimal | str | int, currency: str, *, field: str = "price"
    ) -> tuple[Money | None, list[Problem]]:
        """Like :meth:`of`, but returns the problems instead of raising."""
        problems: list[Problem] = []
        places = CURRENCIES.get(currency)
        if places is None:
            problems.append(
                Problem(f"{field}.currency", f"{currency!r} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)", "currency")
            )
        value = _decimal(amount)
        if value is None:
            problems.append(Problem(f"{field}.amount", f"{amount!r} is not a decimal number (e.g. \"19.99\")", "decimal"))
        elif value < 0:
            problems.append(Problem(f"{field}.amount", "must not be negative", "negative"))
        elif value >= MAX_AMOUNT:
            problems.append(Problem(f"{field}.amount", f"must be less than {MAX_AMOUNT:,}", "too_large"))
        elif places is not None and _places(value) > places:
            problems.append(
                Problem(f"{field}.amount", f"{currency} allows at most {places} decimal places (got {value})", "decimal_places")
            )
        if problems or value is None or places is None:
            return None, problems
        return cls(value.quantize(Decimal(1).scaleb(-places)), currency), []

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def _decimal(amount: Decimal | str | int) -> Decimal | None:
    if isinstance(amount, bool) or isinstance(amount, float):
        return None  # a float has already lost the exact amount
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return value if value.is_finite() else None


def _places(value: Decimal) -> int:
    """Significant decimal places: 19.90 has 1, 100 has 0."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)
