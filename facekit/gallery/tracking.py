"""Linking faces across video frames into tracks, and naming each track by a vote over its frames.

Association is SORT's (Bewley et al. 2016) with DeepSORT's appearance cue: each track carries SORT's
constant-velocity Kalman filter on its box (BoxFilter), and a detection continues a live track when it overlaps the
box the filter predicts for this frame (IoU) and their embeddings agree, or, boxes apart, when the embeddings alone
agree strongly. Prediction is by elapsed seconds, not by frame count, so `--every N` and streams whose frames come
unevenly are predicted as far as the face really moved. Pairs are taken greedily, best first (IoU + cosine
similarity), which equals optimal assignment whenever each face has one clear partner: faces that do not cross and,
as the predicted boxes follow each face, faces that cross at a steady pace; it needs no solver (scipy is not in the
serving install).
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


# SORT's noise settings (abewley/sort, KalmanBoxTracker) are per frame of its MOT videos; ours are per second, read
# at this frame rate: velocities scale by SORT_FPS, and a step of dt seconds adds dt * SORT_FPS frames of process noise
SORT_FPS = 30.0
_PER_SECOND = np.r_[np.ones(4), np.full(3, SORT_FPS)]  # per-frame -> per-second units of each state entry
_P0 = np.diag([10.0] * 4 + [1e4] * 3) * np.outer(_PER_SECOND, _PER_SECOND)  # a new box: velocity unknown
_Q_FRAME = np.diag([1.0] * 4 + [1e-2, 1e-2, 1e-4]) * np.outer(_PER_SECOND, _PER_SECOND)
_R = np.diag([1.0, 1.0, 10.0, 10.0])  # measurement noise of (cx, cy, s, r)
_H = np.eye(4, 7)  # the state's measured part


def box_to_z(box: np.ndarray) -> np.ndarray:
    """Box [4] (x1, y1, x2, y2) -> SORT's measurement [4] (cx, cy, s = area, r = width / height)."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, w * h, w / max(h, 1e-9)])


def z_to_box(z: np.ndarray) -> np.ndarray:
    """SORT's (cx, cy, s, r, ...) [>= 4] -> box [4] (x1, y1, x2, y2); a negative area or ratio gives a point box."""
    s, r = max(float(z[2]), 0.0), max(float(z[3]), 0.0)
    w = math.sqrt(s * r)
    h = s / w if w > 0 else 0.0
    return np.array([z[0] - w / 2, z[1] - h / 2, z[0] + w / 2, z[1] + h / 2])


class BoxFilter:
    """SORT's constant-velocity Kalman filter on one box, in seconds: state x [7] (cx, cy, s, r, vcx, vcy, vs), the
    area s and the aspect ratio r (held constant) as measured, velocities per second; covariance P [7, 7]. It holds
    the estimate at `time`, its last update; predictions run forward from there by the seconds elapsed."""

    def __init__(self, box: np.ndarray, time: float) -> None:
        self.x = np.r_[box_to_z(box), np.zeros(3)]
        self.P = _P0.copy()
        self.time = time

    def _predicted(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """State [7] and covariance [7, 7] at `time` (at least `self.time`). As SORT, the area velocity is dropped
        when it would take the area to zero or below, so the box stays finite."""
        dt = max(time - self.time, 0.0)
        x = self.x.copy()
        if x[2] + x[6] * dt <= 0:
            x[6] = 0.0
        F = np.eye(7)
        F[[0, 1, 2], [4, 5, 6]] = dt
        return F @ x, F @ self.P @ F.T + _Q_FRAME * (dt * SORT_FPS)

    def predict(self, time: float) -> np.ndarray:
        """The box [4] (x1, y1, x2, y2) predicted at `time`; the filter is unchanged."""
        return z_to_box(self._predicted(time)[0])

    def update(self, time: float, box: np.ndarray) -> None:
        """Predict to `time`, then correct with the measured `box` [4]."""
        x, P = self._predicted(time)
        S = _H @ P @ _H.T + _R  # [4, 4]
        K = np.linalg.solve(S, _H @ P).T  # [7, 4]; S and P are symmetric
        I_KH = np.eye(7) - K @ _H
        self.x = x + K @ (box_to_z(box) - _H @ x)
        self.P = I_KH @ P @ I_KH.T + K @ _R @ K.T  # Joseph form: stays symmetric positive definite
        self.time = time


@dataclass
class Track:
    """One face followed across frames: its last box, the motion filter on it, a running mean embedding, and the vote
    of its frames."""

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
    motion: BoxFilter = field(init=False)

    def __post_init__(self) -> None:
        self.motion = BoxFilter(self.box, self.first_time)

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
    """iou: a face overlapping a track's predicted box this much may link when their embeddings reach `similarity`;
    `reidentify`: embeddings this similar link whatever the boxes; `max_gap`: seconds a track waits unseen before it
    ends (predicted on meanwhile); `min_fraction`: the share of a track's frames whose top match must be the winner
    at or above the gallery threshold."""

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
        """Faces of one frame at `time` seconds (boxes [F, 4], embeddings [F, D] L2-normalised, each one's top
        gallery match) -> the track id of each face, and the tracks that ended (unseen for more than max_gap seconds),
        oldest first. Boxes are compared with each live track's box predicted at `time`; a face linked by overlap
        updates its track's filter, one linked by appearance alone (a jump, not motion) restarts it at its box."""
        s = self.settings
        ended = [t for t in self.live if time - t.last_time > s.max_gap]
        self.live = [t for t in self.live if time - t.last_time <= s.max_gap]
        ids = [0] * len(boxes)
        taken: set[int] = set()
        if self.live and len(boxes):
            overlap = iou_matrix(np.stack([t.motion.predict(time) for t in self.live]), boxes)
            similarity = np.stack([t.embedding for t in self.live]) @ np.asarray(embeddings).T
            allowed = ((overlap >= s.iou) & (similarity >= s.similarity)) | (similarity >= s.reidentify)
            for t, d in greedy_assign(overlap + similarity, allowed):
                if overlap[t, d] >= s.iou:
                    self.live[t].motion.update(time, boxes[d])
                else:
                    self.live[t].motion = BoxFilter(boxes[d], time)
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
