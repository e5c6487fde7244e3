"""sso.domain: password policy, e-mail normalisation, the bundled common-password list."""

from __future__ import annotations

import pytest

from meshkit.sso.domain import MIN_LENGTH, common_passwords, normalise_email, password_problems


def test_the_bundled_list_is_a_few_thousand_lowercase_entries():
    common = common_passwords()
    assert 3000 <= len(common) <= 10000
    assert {"password", "123456", "qwertyuiop", "1qaz2wsx3edc"} <= common
    assert all(p == p.lower() for p in common)


@pytest.mark.parametrize("password", [
    "short",                     # too short
    "a" * (MIN_LENGTH - 1),
    "qwertyuiop123",             # listed after stripping digits
    "Password2024!",             # listed word with digits and a symbol around it
    "1qaz2wsx3edc",              # listed as is
    "PASSWORDPASSWORD",          # a listed word said twice
    "abcabcabcabc",              # a short unit repeated
    "aaaaaaaaaaaaaaaa",
    "abababababababab",
    "x" * 300,                   # too long
])
def test_weak_passwords_are_refused(password):
    assert password_problems(password, "ann@example.com")


@pytest.mark.parametrize("password", [
    "correct horse battery staple",
    "tram-violet-ankle-93",
    "Zq8#vR2!mW4$kT",
])
def test_strong_passwords_pass(password):
    assert password_problems(password, "ann@example.com") == []


def test_a_password_built_from_the_email_is_refused():
    assert password_problems("annabelle123!", "annabelle@example.com")


def test_problems_say_what_to_do():
    (problem,) = password_problems("short")
    assert f"at least {MIN_LENGTH} characters" in problem


@pytest.mark.parametrize(("raw", "normal"), [
    ("  Ann@Example.COM ", "ann@example.com"),
    ("ann+tag@example.com", "ann+tag@example.com"),
    ("ＡＮＮ@example.com", "ann@example.com"),   # full-width letters fold (NFKC)
    ("not-an-address", None),
    ("a@b", None),
    ("two@at@example.com", None),
    ("", None),
    ("a\x00b@example.com", None),   # control characters: not an address (PostgreSQL cannot store a NUL)
    ("ann@exa\x07mple.com", None),
    ("x" * 250 + "@example.com", None),
])
def test_email_normalisation(raw, normal):
    assert normalise_email(raw) == normal
