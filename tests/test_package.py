"""``import jaxembed`` exposes its subpackages and the own-data functions lazily: every name it
promises resolves, and a name it does not promise is an ``AttributeError``."""

from __future__ import annotations

import importlib

import pytest

import jaxembed as je


@pytest.mark.parametrize("name", je._SUBPACKAGES)
def test_every_subpackage_imports(name):
    assert getattr(je, name) is importlib.import_module(f"jaxembed.{name}")


@pytest.mark.parametrize("name", sorted(je._RUNS))
def test_fit_evaluate_predict_update_resolve_to_their_modules(name):
    assert getattr(je, name) is getattr(importlib.import_module(je._RUNS[name]), name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="features"):
        je.features  # noqa: B018 - the removed encoding module stays gone
