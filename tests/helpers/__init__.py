"""Helpers shared by the test files (importable as ``helpers``: pytest puts ``tests/`` on the path
for ``tests/conftest.py``). Fixtures go in ``tests/conftest.py``; plain functions go here."""
