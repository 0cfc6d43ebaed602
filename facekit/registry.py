"""Named registries, the one idiom of facekit's detector bodies, recognition backbones and losses (timm's
`@register_model`): a read-only mapping from name to item, iterated in sorted name order, filled at import time by
`add(name, item)` or the `@register()` decorator. Torch-free, so choosing a name costs nothing to import."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name no item is registered under. A KeyError, so the registry is a Mapping; a ValueError, as callers
    catch a bad name; shown as its one-line message, not KeyError's repr."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Mapping[str, T]):
    """Items of one `kind` ("backbone", "loss", ...) by name. `registry[name]` raises UnknownNameError
    "unknown <kind> 'x'; known: a, b, c" for a name not registered."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        """`check(name, item)` raises ValueError for an item the registry must refuse; it runs before `add`."""
        self.kind = kind
        self._check = check
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register `item` as `name` (once per name) and return it."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if self._check is not None:
            self._check(name, item)
        self._items[name] = item
        return item

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: `add` the decorated item under `name`, by default its `__name__`."""

        def decorate(item: T) -> T:
            return self.add(name or item.__name__, item)

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
