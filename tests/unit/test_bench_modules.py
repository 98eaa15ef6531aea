"""Every module of ``bench/`` imports: the benches are not run by the test suite, so an import they lost (a helper
moved to another module) would otherwise show only when someone runs ``make bench-scale``."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench


@pytest.mark.parametrize("name", sorted(m.name for m in pkgutil.iter_modules(bench.__path__)))
def test_every_bench_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
