"""The public API: `__all__` is sorted, complete and importable."""

from __future__ import annotations

import importlib

import charpente


def test_all_is_sorted() -> None:
    assert charpente.__all__ == sorted(charpente.__all__)


def test_every_public_name_imports() -> None:
    module = importlib.import_module("charpente")
    for name in charpente.__all__:
        assert getattr(module, name) is not None, name


def test_hooks_and_errors_are_the_engine_s_own() -> None:
    from charpente.errors import ValidationFailed
    from charpente.runtime.hooks import Hooks

    assert charpente.Hooks is Hooks
    assert charpente.ValidationFailed is ValidationFailed
    assert issubclass(charpente.DesignError, charpente.CharpenteError)


def test_the_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    assert charpente.__version__ == version("charpente")
