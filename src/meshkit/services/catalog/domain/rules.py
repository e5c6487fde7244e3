"""What makes a product valid, as data (limits) and as checks that list every problem."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshkit.basis.errors import Unprocessable

NAME_MAX = 200
DESCRIPTION_MAX = 5000
SKU_MAX = 64
#: Letters, digits, dot, dash and underscore; starting with a letter or digit.
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_SKU = re.compile(SKU_PATTERN)


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid field: its dotted path (``price.amount``), what to do about it, and a stable kind.

    As a dict it has the same keys as the runtime's body validation errors
    (``loc``, ``message``, ``type``), so clients read one shape for every 422.
    """

    field: str
    message: str
    type: str = "value_error"

    def to_dict(self) -> dict[str, str]:
        return {"loc": self.field, "message": self.message, "type": self.type}


class InvalidProduct(Unprocessable):
    """The product breaks the catalog's rules; ``details`` lists each field and why."""

    def __init__(self, problems: list[Problem]) -> None:
        fields = ", ".join(p.field for p in problems)
        super().__init__(
            f"invalid product: fix {fields}",
            details=[p.to_dict() for p in problems],
        )
        self.problems = problems


def check_name(name: str, field: str = "name") -> list[Problem]:
    if not name.strip():
        return [Problem(field, "must not be empty", "empty")]
    if len(name) > NAME_MAX:
        return [Problem(field, f"must be at most {NAME_MAX} characters (got {len(name)})", "too_long")]
    return []


def check_description(description: str, field: str = "description") -> list[Problem]:
    if len(description) > DESCRIPTION_MAX:
        return [Problem(field, f"must be at most {DESCRIPTION_MAX} characters (got {len(description)})", "too_long")]
    return []


def check_sku(sku: str, field: str = "sku") -> list[Problem]:
    if not sku:
        return [Problem(field, "must not be empty", "empty")]
    if len(sku) > SKU_MAX:
        return [Problem(field, f"must be at most {SKU_MAX} characters (got {len(sku)})", "too_long")]
    if not _SKU.match(sku):
        return [Problem(field, "may contain only letters, digits, '.', '-' and '_', starting with a letter or digit", "pattern")]
    return []


def raise_if(problems: list[Problem]) -> None:
    """Raise :class:`InvalidProduct` listing ``problems``, if there are any."""
    if problems:
        raise InvalidProduct(problems)
