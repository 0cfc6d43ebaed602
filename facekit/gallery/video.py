"""recognize on video: frames of a file or a stream -> faces linked into tracks, each track named by a vote.

Output, JSON Lines: one {"type": "frame"} record per processed frame, and one {"type": "track"} record per track
(tracking.Track.summary) as soon as the track has ended (unseen for TrackerSettings.max_gap seconds) or the video has.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit import strict_json
from facekit.data.images import file_problem, photo_errors, photo_failure
from facekit.errors import DataFormatError
from facekit.fileio import output_stream
from facekit.gallery.recognize import Matcher, face_record
from facekit.gallery.tracking import Tracker, TrackerSettings
from facekit.runtime.pipeline import FacePipeline

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# the codec cv2.VideoWriter writes into each container of --save-annotated (both read back by OpenCV's FFmpeg)
WRITE_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def is_stream(source: str | os.PathLike) -> bool:
    """Whether `source` is a URL (rtsp://, http://, ...) rather than a file path."""
    return bool(_URL.match(str(source)))


def is_video(source: str | os.PathLike) -> bool:
    """Whether recognize reads `source` as a video: a stream URL or a file named .mp4 / .avi / .mkv / .mov / ..."""
    return is_stream(source) or Path(source).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Frame:
    index: int  # position in the video, counting every frame (read or skipped)
    time: float  # seconds from the start: index / fps (for a stream without a frame rate, its own clock)
    image: np.ndarray | None  # BGR uint8 [H, W, 3]; None once only its faces are kept


@dataclass
class VideoReader:
    """Frames of a video file or stream, one at a time, every `every`-th one decoded. A file that stops before the
    frames its header declares adds a warning; a stream whose read fails is reopened up to `retries` times in a row
    (waiting backoff, 2 x backoff, ... seconds), then ends with a warning (a URL of a file that declares its frame
    count ends after them, and is resumed at the frame where it dropped). Frames over `max_pixels` are refused."""

    source: str
    every: int = 1
    retries: int = 3
    backoff: float = 0.5
    max_pixels: int | None = None
    open_capture: Callable[[str], object] | None = None  # cv2.VideoCapture, or a stand-in in tests
    warnings: list[str] = field(default_factory=list)
    read: int = 0  # frames read from the source, decoded or skipped

    def _open(self):
        import cv2

        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages are not one-line warnings
        capture = (self.open_capture or cv2.VideoCapture)(self.source)
        if not capture.isOpened():
            return None
        return capture

    def open(self):
        """Open the source, raising DataFormatError (naming it) when OpenCV cannot; sets fps, frames and size."""
        import cv2

        if not is_stream(self.source):
            problem = file_problem(self.source)
            if problem:
                raise DataFormatError(problem)
            if not Path(self.source).is_file():
                raise DataFormatError(f"{self.source}: no such video file")
        capture = self._open()
        if capture is None:
            if is_stream(self.source):
                raise DataFormatError(f"{self.source}: cannot open stream: unreachable, or not one OpenCV can read")
            size = Path(self.source).stat().st_size
            raise DataFormatError(f"{self.source}: cannot open video ({size} bytes): not a video OpenCV can read, or "
                                  "truncated")  # fmt: skip
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frames = int(max(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0, 0))  # 0: unknown (a stream)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.max_pixels is not None and width * height > self.max_pixels:
            capture.release()
            raise DataFormatError(
                f"{self.source}: frames of {width} x {height} pixels are over the --max-pixels limit of "
                f"{self.max_pixels / 1e6:g} MP"
            )
        self.capture = capture
        return self

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        stream, failures, start = is_stream(self.source), 0, time.monotonic()
        try:
            while True:
                keep = self.read % self.every == 0
                ok = self.capture.grab()
                image = self.capture.retrieve()[1] if ok and keep else None
                if not ok or (keep and image is None):
                    if not stream or (self.frames and self.read >= self.frames):  # the end, not a drop
                        break
                    if failures >= self.retries:
                        self.warnings.append(f"{self.source}: stream dropped; gave up after {self.retries} retries "
                                             f"({self.read} frames read)")  # fmt: skip
                        return
                    self.capture.release()
                    time.sleep(self.backoff * 2**failures)
                    failures += 1
                    reopened = self._open()
                    if reopened is not None:
                        self.capture = reopened
                        if self.frames:  # a remote file, not a live stream: go on from where it dropped
                            self.capture.set(cv2.CAP_PROP_POS_FRAMES, self.read)
                    continue
                failures = 0
                index, self.read = self.read, self.read + 1
                if image is None:
                    continue
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                seconds = index / self.fps if self.fps > 0 else time.monotonic() - start
                yield Frame(index, seconds, image)
            if self.frames and self.read < self.frames:
                self.warnings.append(f"{self.source}: truncated or corrupt: read {self.read} of the {self.frames} "
                                     "frames its header declares")  # fmt: skip
        finally:
            self.capture.release()


class AnnotatedVideo:
    """An annotated copy of the video: frames go to a hidden temporary file beside `path` (same container), renamed
    to `path` by commit() (discard() removes it), so a run that fails leaves no partial video."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        codec = WRITE_CODECS.get(path.suffix.lower())
        if codec is None:
            raise DataFormatError(f"{path}: annotated video must end in {', '.join(WRITE_CODECS)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(name, 0o666 & ~mask)  # mkstemp makes 0600 files; give the video the usual mode
        self.path, self.tmp = path, Path(name)
        self.writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*codec), fps, size)
        if not self.writer.isOpened():
            self.discard()
            raise DataFormatError(f"{path}: OpenCV cannot write {codec} video into {path.suffix}")

    def write(self, image: np.ndarray) -> None:
        self.writer.write(image)

    def commit(self) -> None:
        self.writer.release()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


@dataclass
class VideoReport:
    frames: int = 0  # frames processed
    faces: int = 0
    tracks: list[dict] = field(default_factory=list)  # the track records, in the order written
    skipped: list[str] = field(default_factory=list)  # frames whose processing failed
    warnings: list[str] = field(default_factory=list)  # truncated file, dropped stream


def recognize_video(
    source: str,
    pipeline: FacePipeline,
    matcher: Matcher,
    *,
    threshold: float,
    top_k: int = 5,
    every: int = 1,
    retries: int = 3,
    backoff: float = 0.5,
    batch_frames: int = 16,
    tracker: TrackerSettings | None = None,
    out: Path | None = None,
    annotated: Path | None = None,
    progress: bool | None = None,
    open_capture: Callable[[str], object] | None = None,
) -> VideoReport:
    """Recognize and track the faces of every `every`-th frame of video file or stream URL `source`; write JSON
    Lines to `out` (atomically) or stdout: per frame {"type": "frame", "frame", "time", "faces": [{"track", "box",
    "score", "landmarks", "identity" (None = unknown), "similarity", "candidates": [{"identity", "similarity"}]
    (the `top_k` best, as for photos)}]}, per track Track.summary. Faces are embedded
    `batch_frames` frames at a time (their crops held, and the frames themselves only for `annotated`). Raises
    DataFormatError, leaving no output, when not one frame could be read."""
    import sys

    from tqdm import tqdm

    reader = VideoReader(source, every, retries, backoff, pipeline.max_pixels, open_capture).open()
    fps = reader.fps / every if reader.fps > 0 else 25.0
    run = _Run(Tracker(threshold, tracker), VideoReport(), annotated, fps, top_k)
    errors = photo_errors()
    bar = tqdm(total=reader.frames or None, desc="recognize", unit="frame", file=sys.stderr,
               disable=None if progress is None else not progress)  # fmt: skip
    try:
        with output_stream(out) as sink:
            run.write = lambda record: sink.write(strict_json.dumps(record) + "\n")
            batch: list[tuple[Frame, list, np.ndarray]] = []  # (frame, its faces, their aligned crops)
            for frame in reader:
                bar.update(reader.read - bar.n)
                try:
                    faces = pipeline.detect(frame.image)
                    crops = pipeline.crops([frame.image] * len(faces), faces)
                except errors as exc:
                    run.report.skipped.append(f"frame {frame.index}: {photo_failure(source, exc)}")
                    continue
                batch.append((frame if annotated is not None else Frame(frame.index, frame.time, None), faces, crops))
                if len(batch) >= batch_frames:
                    run.flush(batch, pipeline, matcher)
            run.flush(batch, pipeline, matcher)
            bar.update(reader.read - bar.n)
            run.report.warnings = reader.warnings
            if not run.report.frames:  # raised inside the block: no empty --out file is left behind
                raise DataFormatError(f"{source}: no frame could be read" + "".join(f"; {w}" for w in reader.warnings))
            run.ended(run.tracker.finish())
        if run.video is not None:
            run.video.commit()
            run.video = None
    finally:
        bar.close()
        if run.video is not None:
            run.video.discard()
    return run.report


@dataclass
class _Run:
    """recognize_video's output side: frames through the tracker into records, the annotated video."""

    tracker: Tracker
    report: VideoReport
    annotated: Path | None
    fps: float
    top_k: int = 5
    video: AnnotatedVideo | None = None
    write: Callable[[dict], object] | None = None

    def flush(self, batch: list[tuple[Frame, list, np.ndarray]], pipeline: FacePipeline, matcher: Matcher) -> None:
        """Embed and search the faces of `batch` at once, then track and write its frames in order; empties it."""
        if not batch:
            return
        embeddings = pipeline.embed_crops(np.concatenate([crops for _, _, crops in batch]))
        with pipeline.timed("search"):
            candidates = matcher.match(embeddings, self.top_k)
        start = 0
        for frame, faces, _ in batch:
            end = start + len(faces)
            self.frame(frame, faces, embeddings[start:end], candidates[start:end])
            start = end
        batch.clear()

    def frame(self, frame: Frame, faces: list, embeddings: np.ndarray, candidates: list) -> None:
        """Track and write one frame; `candidates` holds each face's (identity, similarity) pairs, best first."""
        from facekit.draw import draw_faces

        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        matches = [c[0] if c else None for c in candidates]  # the tracker votes with each face's top match
        ids, ended = self.tracker.update(frame.index, frame.time, boxes, embeddings, matches)
        records = [{"track": track, **face_record(face, listed, self.tracker.threshold)}
                   for face, track, listed in zip(faces, ids, candidates, strict=True)]  # fmt: skip
        self.write({"type": "frame", "frame": frame.index, "time": round(frame.time, 3), "faces": records})
        self.report.frames += 1
        self.report.faces += len(records)
        self.ended(ended)
        if self.annotated is not None:
            if self.video is None:
                self.video = AnnotatedVideo(self.annotated, self.fps, frame.image.shape[1::-1])
            labels = [f"#{r['track']} {r['identity'] or 'unknown'} {r['similarity']:.2f}" for r in records]
            self.video.write(draw_faces(frame.image, faces, labels))

    def ended(self, tracks: list) -> None:
        for track in tracks:
            self.report.tracks.append(track.summary(self.tracker.settings.min_fraction))
            self.write(self.report.tracks[-1])
