"""Every store package is built to one plan (docs/architecture.md, "where things live"): the same
files with the same roles, the same entry points, and adapters offering the same public functions."""

from importlib import import_module
from pathlib import Path

import pytest

from billing.providers import registry
from billing.providers.base import ProviderAdapter

PROVIDERS = Path(import_module("billing.providers").__file__).parent
# Every store has these; services.py (its own writes) and tasks.py (its Celery tasks) where it has any.
FILES = {"__init__.py", "adapter.py", "auth.py", "client.py", "mapping.py", "selectors.py", "admin.py"}
OPTIONAL = {"services.py", "tasks.py"}
# One name per job in every store.
ENTRY_POINTS = {"auth": "webhook_authenticate", "client": "subscription_get", "mapping": "subscription_snapshot",
                "admin": "ACTIONS"}


TESTS = Path(__file__).parent
# tests/providers/<store>/ mirrors the package: the same test files with the same roles in every store.
TEST_FILES = {"conftest.py", "test_auth.py", "test_events.py", "test_client.py", "test_mapping.py", "test_api.py",
              "test_repoll.py", "test_ledger.py"}


def public(cls) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize("store", registry.store_names())
def test_every_store_package_has_the_same_files(store):
    files = {path.name for path in (PROVIDERS / store).glob("*.py")}
    assert files >= FILES, f"{store} lacks {sorted(FILES - files)}"
    assert files - FILES <= OPTIONAL, f"{store} has files outside the plan: {sorted(files - FILES - OPTIONAL)}"


@pytest.mark.parametrize("store", registry.store_names())
def test_every_store_names_its_entry_points_alike(store):
    for module, name in ENTRY_POINTS.items():
        assert hasattr(import_module(f"billing.providers.{store}.{module}"), name), f"{store}.{module}.{name}"
    assert hasattr(import_module(f"billing.providers.{store}.admin"), "LIST_FILTERS")


@pytest.mark.parametrize("store", registry.store_names())
def test_every_store_is_tested_to_the_same_plan(store):
    files = {path.name for path in (TESTS / store).glob("*.py")}
    assert files >= TEST_FILES, f"tests/providers/{store} lacks {sorted(TEST_FILES - files)}"
    if (PROVIDERS / store / "services.py").exists():
        assert "test_services.py" in files
    if import_module(f"billing.providers.{store}.admin").ACTIONS:
        assert "test_admin.py" in files


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_adapter_provides_the_same_public_functions(name):
    """Including the manual provider and the test suite's own adapter: callers rely on the interface
    alone, never on one store's extras."""
    assert public(type(registry.get_adapter(name))) == public(ProviderAdapter)


def test_the_registry_holds_the_four_stores_and_the_staff_grants():
    assert registry.store_names() == ["stripe", "apple", "google", "xsolla"]
    assert "manual" in registry.names() and "manual" not in registry.store_names()
