"""`--shard K/N`: a deterministic split of a batch job's inputs, so that N machines each run one part.

A photo belongs to shard K (1..N) when the SHA-1 of its path relative to the input's root (the data folder, or
the folder of a list file), written with forward slashes, as UTF-8 (a name that is not UTF-8: its own bytes), read
as a big-endian number of its first 8 bytes, is K - 1 modulo N. The split depends on nothing but that relative path
and N: not on the order of the inputs, the machine, the Python process (unlike the salted hash()) or where the data
is mounted. Paths outside the root (absolute ones in a list) key by their absolute path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TypeVar

from facekit.errors import FacekitError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1..count) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: expected K/N with 1 <= K <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'K/N' (1 <= K <= N, e.g. 1/4) -> Shard; ValueError with a one-line reason otherwise."""
        index, slash, count = text.strip().partition("/")
        if not (slash and index.strip().isdigit() and count.strip().isdigit()):
            raise ValueError(f"{text!r}: expected K/N, shard K of N with 1 <= K <= N (e.g. 1/4)")
        k, n = int(index), int(count)
        if n < 1 or not 1 <= k <= n:
            raise ValueError(f"{text!r}: expected 1 <= K <= N and N >= 1 (shards are numbered from 1, e.g. 1/4 .. 4/4)")
        return cls(k, n)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, key: str) -> bool:
        """Whether the photo of relative path `key` (shard_key) is in this shard."""
        return shard_of(key, self.count) == self.index

    def select(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """The items of this shard, in their order."""
        return [item for item in items if self.holds(key(item))]


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) of the relative path `key`."""
    digest = hashlib.sha1(os.fsencode(key)).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def shard_key(path: PurePath, root: PurePath) -> str:
    """`path` relative to `root`, POSIX-style ("s1/1.pgm"); a path outside `root` (an absolute one in a list) as it
    is. Lexical: symbolic links are not followed, so the key is the same wherever the data is mounted."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def input_root(source: Path) -> Path:
    """What paths of `source`'s photos are taken relative to: a folder itself, a list file's (or a photo's) folder."""
    return source if source.is_dir() else source.parent


def select_photos(
    shard: Shard | None, source: Path, items: Sequence[T], path: Callable[[T], Path] = lambda item: item
) -> list[T]:
    """The items of `source`'s listing (photos, or (photo, identity) pairs whose photo `path` gives) in `shard`, in
    their order (all of them when `shard` is None)."""
    if shard is None:
        return list(items)
    root = input_root(source)
    return shard.select(items, lambda item: shard_key(path(item), root))


def require_some(shard: Shard | None, chosen: int, total: int, source: str) -> None:
    """FacekitError (exit 1: nothing to write) when `shard` holds none of `source`'s `total` photos."""
    if shard is not None and total and not chosen:
        raise FacekitError(f"{source}: shard {shard} holds none of its {total} photos; use fewer shards")
