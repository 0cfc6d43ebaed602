"""Linking faces across video frames into tracks, and naming each track by a vote over its frames.

Association is SORT-style without a motion model, with DeepSORT's appearance cue: a detection continues a live track
when their boxes overlap (IoU) and their embeddings agree, or, boxes apart, when the embeddings alone agree strongly.
Pairs are taken greedily, best first (IoU + cosine similarity), which equals optimal assignment whenever each face has
one clear partner, as in faces that do not cross; it needs no solver (scipy is not in the serving install).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2): [N, M]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area = lambda boxes: np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_assign(scores: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs of `allowed` [N, M] (bool), each row and column used once, taken in order of falling
    `scores` [N, M]; ties go to the lower row, then the lower column."""
    rows, cols = np.nonzero(allowed)
    order = np.lexsort((cols, rows, -scores[rows, cols]))
    used_rows, used_cols, pairs = set(), set(), []
    for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class Track:
    """One face followed across frames: its last box, a running mean embedding, and the vote of its frames."""

    id: int
    first_frame: int
    first_time: float
    box: np.ndarray  # [4], the last one seen
    embedding: np.ndarray  # [D], L2-normalised running mean
    last_frame: int = 0
    last_time: float = 0.0
    frames: int = 0
    votes: dict[str, float] = field(default_factory=dict)  # identity -> summed similarity of frames it was top-1
    passed: dict[str, int] = field(default_factory=dict)  # identity -> frames it was top-1 at or above the threshold
    best: dict[str, float] = field(default_factory=dict)  # identity -> its best similarity in this track

    def add(self, frame: int, time: float, box: np.ndarray, embedding: np.ndarray, match: tuple | None,
            threshold: float) -> None:  # fmt: skip
        """Count a frame whose top gallery match is `match` (identity, similarity), or None (empty gallery)."""
        self.last_frame, self.last_time, self.box = frame, time, box
        mean = self.embedding * self.frames + embedding
        self.embedding = mean / max(float(np.linalg.norm(mean)), 1e-12)
        self.frames += 1
        if match is not None:
            name, similarity = match
            self.votes[name] = self.votes.get(name, 0.0) + max(similarity, 0.0)
            self.passed[name] = self.passed.get(name, 0) + (similarity >= threshold)
            self.best[name] = max(self.best.get(name, -1.0), similarity)

    def identity(self, min_fraction: float) -> str | None:
        """The identity with the largest summed similarity, if it was the top match at or above the threshold in at
        least `min_fraction` of the track's frames; else None (unknown)."""
        if not self.votes:
            return None
        winner = max(self.votes, key=lambda name: (self.votes[name], name))
        return winner if self.passed[winner] >= math.ceil(min_fraction * self.frames) else None

    def summary(self, min_fraction: float) -> dict:
        """The track's JSON record: {"type": "track", "track", "first_frame", "last_frame", "first_time", "last_time",
        "frames", "identity" (None = unknown), "votes": {identity: summed similarity}, "best_similarity"}."""
        identity = self.identity(min_fraction)
        best = max(self.best.values(), default=None) if identity is None else self.best[identity]
        return {
            "type": "track",
            "track": self.id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_time": round(self.first_time, 3),
            "last_time": round(self.last_time, 3),
            "frames": self.frames,
            "identity": identity,
            "votes": {name: round(v, 4) for name, v in sorted(self.votes.items(), key=lambda kv: -kv[1])},
            "best_similarity": None if best is None else round(best, 5),
        }


@dataclass(kw_only=True)
class TrackerSettings:
    """iou: boxes overlapping this much may link when their embeddings reach `similarity`; `reidentify`: embeddings
    this similar link whatever the boxes; `max_gap`: seconds a track waits unseen before it ends; `min_fraction`:
    the share of a track's frames whose top match must be the winner at or above the gallery threshold."""

    iou: float = 0.3
    similarity: float = 0.2
    reidentify: float = 0.6
    max_gap: float = 1.0
    min_fraction: float = 0.5


class Tracker:
    """Tracks over a sequence of frames: update() with each processed frame's faces, then finish() at the end."""

    def __init__(self, threshold: float, settings: TrackerSettings | None = None) -> None:
        self.threshold = threshold
        self.settings = settings or TrackerSettings()
        self.live: list[Track] = []
        self.next_id = 1

    def update(self, frame: int, time: float, boxes: np.ndarray, embeddings: np.ndarray,
               matches: Sequence[tuple[str, float] | None]) -> tuple[list[int], list[Track]]:  # fmt: skip
        """Faces of one frame (boxes [F, 4], embeddings [F, D] L2-normalised, each one's top gallery match) -> the
        track id of each face, and the tracks that ended (unseen for more than max_gap seconds), oldest first."""
        s = self.settings
        ended = [t for t in self.live if time - t.last_time > s.max_gap]
        self.live = [t for t in self.live if time - t.last_time <= s.max_gap]
        ids = [0] * len(boxes)
        taken: set[int] = set()
        if self.live and len(boxes):
            overlap = iou_matrix(np.stack([t.box for t in self.live]), boxes)
            similarity = np.stack([t.embedding for t in self.live]) @ np.asarray(embeddings).T
            allowed = ((overlap >= s.iou) & (similarity >= s.similarity)) | (similarity >= s.reidentify)
            for t, d in greedy_assign(overlap + similarity, allowed):
                self.live[t].add(frame, time, boxes[d], embeddings[d], matches[d], self.threshold)
                ids[d] = self.live[t].id
                taken.add(d)
        for d in range(len(boxes)):
            if d not in taken:
                track = Track(self.next_id, frame, time, boxes[d], np.zeros_like(embeddings[d]))
                track.add(frame, time, boxes[d], embeddings[d], matches[d], self.threshold)
                self.live.append(track)
                ids[d] = track.id
                self.next_id += 1
        return ids, ended

    def finish(self) -> list[Track]:
        """The tracks still live (the video ended), oldest first."""
        ended, self.live = self.live, []
        return ended
