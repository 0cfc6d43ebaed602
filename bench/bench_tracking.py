"""Video tracking: how many tracks each face is split into, with SORT's motion model (facekit's tracker) and with the
last-box rule it replaced (a track's last detected box compared as is), on synthetic faces moving at a steady pace.

Each run: FACES boxes of 40-120 px placed at random in a 1200 x 600 area, each moving at a steady speed drawn
uniformly up to --speed px a frame on each axis, FRAMES frames at 30 fps, every --every-th frame processed, each
detection missed with probability --miss; a face's embedding is at cosine 0.55 to its person (links by appearance
and overlap, below the tracker's re-identification cosine, 0.6), a fresh random part each frame. Tracks per face:
distinct track ids a face received (1.00 is ideal); id switches: a track that received a second face. Mean of --seeds
runs.

    python bench/bench_tracking.py                  # --every 1, 3, 5 x missed 0 %, 10 %, speed 4 px a frame
    python bench/bench_tracking.py --speed 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facekit.gallery.tracking import BoxFilter, Tracker, z_to_box

FPS = 30.0
COSINE = 0.55


def run(motion: int, every: int, miss: float, speed: float, seed: int, faces: int, frames: int) -> tuple:
    """(tracks per face, id switches, ms per tracker update) of one synthetic video."""
    rng = np.random.default_rng(seed)
    dim = faces * (frames + 1)  # one axis per person, one per (person, frame) of fresh noise
    start = rng.uniform([0, 0], [1200, 600], (faces, 2))
    velocity = rng.uniform(-speed, speed, (faces, 2))
    size = rng.uniform(40, 120, faces)
    tracker, owner, ids_of, switches, spent, updates = Tracker(0.5), {}, [set() for _ in range(faces)], 0, 0.0, 0
    saved = BoxFilter.predict
    if not motion:  # the last-box rule: a track's box where it was last seen
        BoxFilter.predict = lambda self, time: z_to_box(self.x)
    try:
        for frame in range(0, frames, every):
            seen = [i for i in range(faces) if rng.random() >= miss]
            corner = start + velocity * frame
            boxes = np.array([[*corner[i], *(corner[i] + size[i])] for i in seen]).reshape(-1, 4)
            embeddings = np.zeros((len(seen), dim))
            for row, i in enumerate(seen):
                embeddings[row, i] = COSINE
                embeddings[row, faces + i * frames + frame] = np.sqrt(1 - COSINE**2)
            began = time.perf_counter()
            ids, _ = tracker.update(frame, frame / FPS, boxes, embeddings, [None] * len(seen))
            spent, updates = spent + time.perf_counter() - began, updates + 1
            for row, i in enumerate(seen):
                ids_of[i].add(ids[row])
                switches += owner.setdefault(ids[row], i) != i
    finally:
        BoxFilter.predict = saved
    return sum(map(len, ids_of)) / faces, switches, spent / updates * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", default="1,3,5", help="frames processed: every N-th (default 1,3,5)")
    parser.add_argument("--miss", default="0,0.1", help="share of detections missed (default 0,0.1)")
    parser.add_argument("--speed", type=float, default=4.0, help="largest speed, px a frame on each axis (default 4)")
    parser.add_argument("--faces", type=int, default=6, help="faces in the video (default 6)")
    parser.add_argument("--frames", type=int, default=300, help="frames (default 300: 10 s)")
    parser.add_argument("--seeds", type=int, default=5, help="videos averaged (default 5)")
    args = parser.parse_args()
    print("| --every | missed | tracks per face, last box | tracks per face, motion model | id switches, last box "
          "/ motion model | ms per update |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for every in map(int, args.every.split(",")):
        for miss in map(float, args.miss.split(",")):
            video = (every, miss, args.speed)
            cells = {m: [run(m, *video, seed, args.faces, args.frames) for seed in range(args.seeds)] for m in (0, 1)}
            tracks = [np.mean([c[0] for c in cells[m]]) for m in (0, 1)]
            switches = [sum(c[1] for c in cells[m]) for m in (0, 1)]
            print(f"| {every} | {miss:.0%} | {tracks[0]:.2f} | {tracks[1]:.2f} | {switches[0]} / {switches[1]} | "
                  f"{np.mean([c[2] for c in cells[1]]):.2f} |")  # fmt: skip
    print(f"\n{args.faces} faces of 40-120 px, speed up to {args.speed:g} px a frame, {args.frames} frames at "
          f"{FPS:g} fps, {args.seeds} seeds")  # fmt: skip


if __name__ == "__main__":
    main()
