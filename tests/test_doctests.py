"""The runnable examples in docstrings (app, backend, storage) hold: each module's doctests run here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import app
import backend
import storage


def _modules() -> list[str]:
    names = []
    for pkg in (app, backend, storage):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", [n for n in _modules() if n != "app.__main__"])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
