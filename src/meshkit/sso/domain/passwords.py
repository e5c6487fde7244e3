"""Password policy and e-mail normalisation: pure rules, no I/O beyond reading the bundled list once.

Policy (NIST SP 800-63B style: length over composition rules):

- at least :data:`MIN_LENGTH` (12) characters, at most :data:`MAX_LENGTH` (256: argon2
  cost does not depend on it, but a bound keeps requests small);
- not a common password (``common_passwords.txt``, ~5,000 entries), also after
  lower-casing and after stripping digits and symbols around it
  (``Password2024!`` is ``password``);
- not one character repeated, not a repetition of a short unit (``abcabcabcabc``)
  or of a common password, not mostly the user's own e-mail name.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources

MIN_LENGTH = 12
MAX_LENGTH = 256
# No whitespace and no control character (a NUL cannot even be stored in PostgreSQL).
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
_EDGES = re.compile(r"^[\d\W_]+|[\d\W_]+$")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (lower case)."""
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def normalise_email(email: str) -> str | None:
    """The canonical form of an address (NFKC, trimmed, lower case), or ``None`` if it is not one.

    The whole address is lower-cased: treating ``Bob@x`` and ``bob@x`` as two
    accounts helps nobody and invites impersonation.
    """
    if not isinstance(email, str):
        return None
    value = unicodedata.normalize("NFKC", email).strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        return None
    return value


def normalise_password(password: str) -> str:
    """The form a password is hashed and checked in: NFKC (NIST SP 800-63B).

    The same characters typed on another keyboard or system may arrive composed
    (``é``) or decomposed (``e`` + combining accent): without this one of them
    was a wrong password.
    """
    return unicodedata.normalize("NFKC", password)


def password_problems(password: str, email: str | None = None) -> list[str]:
    """What is wrong with ``password`` (empty when it is acceptable), each saying what to do."""
    if not isinstance(password, str):
        return ["the password must be a string"]
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"use at least {MIN_LENGTH} characters (a few unrelated words make a good password)")
    if len(password) > MAX_LENGTH:
        problems.append(f"use at most {MAX_LENGTH} characters")
    if problems:
        return problems
    lowered = password.lower()
    core = _EDGES.sub("", lowered)
    common = common_passwords()
    if lowered in common or (core and core in common) or _repeats(lowered, common) or (core and _repeats(core, common)):
        problems.append("this password is too common or too predictable: choose one nobody else would")
    elif len(set(lowered)) <= 2:
        problems.append("use more than two different characters")
    elif email:
        local = email.split("@", 1)[0].lower()
        if len(local) >= 4 and (local in lowered and len(lowered) - len(local) < 6):
            problems.append("do not build the password from your e-mail address")
    return problems


def _repeats(text: str, common: frozenset[str]) -> bool:
    """Whether ``text`` is a short unit, or a common password, said several times."""
    n = len(text)
    for size in range(1, n // 2 + 1):
        if n % size == 0 and text[:size] * (n // size) == text:
            return size <= 4 or text[:size] in common
    return False


__all__ = ["MAX_LENGTH", "MIN_LENGTH", "common_passwords", "normalise_email", "normalise_password",
           "password_problems"]
