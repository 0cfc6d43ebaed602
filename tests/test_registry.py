"""facekit.registry: the one registry idiom of detector bodies, backbones and losses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facekit.registry import Registry, UnknownNameError


def _fruits() -> Registry[int]:
    fruits: Registry[int] = Registry("fruit")
    fruits.add("pear", 2)
    fruits.add("apple", 1)
    return fruits


def test_a_read_only_mapping_in_sorted_order():
    fruits = _fruits()

    @fruits.register()
    def cherry() -> int:
        return 3

    fruits.register("date")(4)
    assert list(fruits) == fruits.names() == ["apple", "cherry", "date", "pear"]
    assert len(fruits) == 4 and "pear" in fruits and "plum" not in fruits
    assert fruits["cherry"] is cherry and fruits.get("plum") is None
    assert dict(fruits.items()) == {"apple": 1, "cherry": cherry, "date": 4, "pear": 2}
    assert not hasattr(fruits, "__setitem__")


def test_unknown_name_is_a_one_line_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"^unknown fruit 'plum'; known: apple, pear$") as info:
        _fruits()["plum"]
    assert isinstance(info.value, KeyError) and isinstance(info.value, UnknownNameError)


def test_a_name_registers_once_and_check_refuses_before_adding():
    fruits = _fruits()
    with pytest.raises(ValueError, match="fruit 'pear' is already registered"):
        fruits.add("pear", 5)
    assert fruits["pear"] == 2

    def odd(name: str, item: int) -> None:
        if item % 2 == 0:
            raise ValueError(f"{name}: {item} is even")

    odd_fruits: Registry[int] = Registry("fruit", check=odd)
    with pytest.raises(ValueError, match="fig: 2 is even"):
        odd_fruits.add("fig", 2)
    assert "fig" not in odd_fruits


def test_the_three_registries_share_the_idiom():
    from facekit.detection.model import BODIES
    from facekit.recognition.backbones import BACKBONES
    from facekit.recognition.losses import LOSSES

    for registry, kind in ((BODIES, "detector body"), (BACKBONES, "backbone"), (LOSSES, "loss")):
        assert isinstance(registry, Registry) and registry.kind == kind
        assert list(registry) == sorted(registry) and len(registry) >= 2
        with pytest.raises(ValueError, match=rf"^unknown {kind} 'nope'; known: {', '.join(registry)}$"):
            registry["nope"]


def test_importing_the_registry_imports_no_torch():
    code = "import sys, facekit.registry; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
