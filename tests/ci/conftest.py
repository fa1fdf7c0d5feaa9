"""Pipeline fixtures live in tests/conftest.py (the endpoint tests share the deployed stack)."""

from tests.conftest import REPO_ROOT, STACK_NAME, TEST_MODEL, Deployed

__all__ = ["REPO_ROOT", "STACK_NAME", "TEST_MODEL", "Deployed"]
