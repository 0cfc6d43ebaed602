"""recognize on video: frames -> tracks -> identities by vote; truncated files, dropped streams; the tracker's parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_serving_without_torch import onnx_recognizer  # noqa: F401 (a fixture: the random recognizer as ONNX)

from facekit.errors import DataFormatError
from facekit.gallery.tracking import Tracker, TrackerSettings, greedy_assign, iou_matrix
from facekit.gallery.video import VideoReader

FPS = 5
GAP = 7  # blank frames between appearances: 1.4 s, longer than TrackerSettings.max_gap (1 s), so tracks end
# appearances: (first frame, [(person, photo, x)]), each for SHOWN frames, moving 3 px a frame; ORL people s1-s4 are
# enrolled (photos 1-3), s5 and s6 are strangers. Photos whose face reaches the photo's edge (s1/9.pgm) align onto the
# wall around them and lose their likeness; these keep it (similarity 0.74-0.95 to their person, <= 0.28 to others)
SHOWN = 6
APPEARANCES = [
    (0, [(4, 8, 20), (5, 6, 270)]),  # a known person and a stranger side by side
    (SHOWN + GAP, [(2, 7, 140)]),
    (2 * (SHOWN + GAP), [(6, 6, 140)]),
    (3 * (SHOWN + GAP), [(4, 9, 140)]),  # s4 again: a new appearance, a new track
]
FRAMES = 3 * (SHOWN + GAP) + SHOWN


def write_video(path: Path, shared_data: Path, fourcc: str = "MJPG") -> None:
    """FRAMES frames of 480 x 360 at FPS: ORL photos (scaled 2x) pasted onto a gradient, as APPEARANCES says."""
    import cv2

    rng = np.random.default_rng(0)
    wall = np.tile(np.linspace(40, 200, 480, dtype=np.float32)[None, :, None], (360, 1, 3))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (480, 360))
    assert writer.isOpened()
    for frame in range(FRAMES):
        image = np.clip(wall + rng.normal(0, 3, wall.shape), 0, 255).astype(np.uint8)
        for start, faces in APPEARANCES:
            if start <= frame < start + SHOWN:
                for person, photo, x in faces:
                    face = cv2.imread(str(shared_data / f"faces/orl/s{person}/{photo}.pgm"))
                    face = cv2.resize(face, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
                    x, y = x + 3 * (frame - start), 60 + 2 * (frame - start)
                    image[y : y + face.shape[0], x : x + face.shape[1]] = face
        writer.write(image)
    writer.release()


def expected_tracks() -> list[tuple[int, int, str | None]]:
    """(first frame, last frame, identity) of each appearance, in track order (left to right within a frame)."""
    return [
        (start, start + SHOWN - 1, f"s{p}" if p <= 4 else None) for start, faces in APPEARANCES for p, _, _ in faces
    ]


@pytest.fixture
def people(shared_data, tmp_path) -> Path:
    """Identity folders of s1-s4, photos 1-3 (links to the ORL files)."""
    root = tmp_path / "people"
    for person in range(1, 5):
        (root / f"s{person}").mkdir(parents=True)
        for k in (1, 2, 3):
            (root / f"s{person}/{k}.pgm").symlink_to(shared_data / f"faces/orl/s{person}/{k}.pgm")
    return root


def run_video(cli, video, db, scrfd, recognizer, out, *args):
    result = cli("recognize", video, db, scrfd, recognizer, "--out", out, *args)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    frames = [r for r in records if r["type"] == "frame"]
    tracks = [r for r in records if r["type"] == "track"]
    return result, frames, tracks


@pytest.mark.slow  # 4 runs of recognize over 45 frames (~10 s); quick siblings: test_reader_*, test_tracker_*
def test_tracks_truncation_and_annotated_video(cli, shared_data, random_recognizer, scrfd, people, tmp_path):
    """One track per appearance, the frames of a truncated copy, an annotated video (an untrained recognizer: tracks,
    not names; test_video_identities_by_vote checks names)."""
    import cv2

    video, db, out = tmp_path / "clip.avi", tmp_path / "g.h5", tmp_path / "out.jsonl"
    write_video(video, shared_data)
    assert cli("build-db", people, scrfd, random_recognizer, db).exit_code == 0
    annotated = tmp_path / "annotated.mp4"
    result, frames, tracks = run_video(cli, video, db, scrfd, random_recognizer, out, "--save-annotated", annotated)
    assert result.exit_code == 0, result.output
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    assert [f["time"] for f in frames[:3]] == [0.0, 0.2, 0.4]
    assert [(t["first_frame"], t["last_frame"]) for t in tracks] == [(a, b) for a, b, _ in expected_tracks()]
    assert [t["track"] for t in tracks] == [1, 2, 3, 4, 5]
    for start, _ in APPEARANCES:  # each face of each frame carries its appearance's track
        left_to_right = {
            tuple(face["track"] for face in sorted(frame["faces"], key=lambda face: face["box"][0]))
            for frame in frames[start : start + SHOWN]
        }
        (ids,) = left_to_right
        assert sorted(ids) == [t["track"] for t in tracks if t["first_frame"] == start]
    assert tracks[0]["first_time"] == 0.0 and tracks[0]["last_time"] == (SHOWN - 1) / FPS
    assert "45 frames, 30 faces, 5 tracks" in result.output
    written = cv2.VideoCapture(str(annotated))
    assert written.get(cv2.CAP_PROP_FRAME_COUNT) == FRAMES and written.get(cv2.CAP_PROP_FRAME_WIDTH) == 480

    # every 2nd frame: times stay the video's own
    result, frames, _ = run_video(cli, video, db, scrfd, random_recognizer, out, "--every", 2)
    assert result.exit_code == 0 and [f["frame"] for f in frames] == list(range(0, FRAMES, 2))
    assert frames[1]["time"] == 0.4

    # cut bytes: the frames before the cut, a one-line warning, exit 0
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    result, frames, tracks = run_video(cli, cut, db, scrfd, random_recognizer, out)
    assert result.exit_code == 0, result.output
    assert 15 < len(frames) < FRAMES and [f["frame"] for f in frames] == list(range(len(frames)))
    warning = f"warning: {cut}: truncated or corrupt: read {len(frames)} of the {FRAMES} frames its header declares"
    assert warning in result.output
    assert [(t["first_frame"], t["last_frame"]) for t in tracks][:2] == [(a, b) for a, b, _ in expected_tracks()][:2]

    # nothing readable: exit 1, no output
    out.unlink()
    cut.write_bytes(data[:300])
    result = cli("recognize", cut, db, scrfd, random_recognizer, "--out", out)
    assert result.exit_code == 1 and "Error: " in result.output and str(cut) in result.output
    assert not out.exists()


def assert_candidates(face: dict, top_k: int, people: int) -> None:
    """A face's candidates: min(top_k, people) distinct identities, best first, the first being its identity (when
    known) and carrying its similarity."""
    candidates = face["candidates"]
    assert len(candidates) == min(top_k, people)
    assert len({c["identity"] for c in candidates}) == len(candidates)
    similarities = [c["similarity"] for c in candidates]
    assert similarities == sorted(similarities, reverse=True)
    assert candidates[0]["similarity"] == face["similarity"]
    if face["identity"] is not None:
        assert candidates[0]["identity"] == face["identity"]


def test_video_faces_carry_top_k_candidates_as_photos_do(cli, shared_data, onnx_recognizer, scrfd, people,  # noqa: F811
                                                         tmp_path):  # fmt: skip
    """--top-k K lists K candidates per face of a video frame (all 4 people when K is larger), in the same shape and
    order as recognize gives for the same frame saved as a photo."""
    import cv2

    video, db, out = tmp_path / "clip.avi", tmp_path / "g.h5", tmp_path / "out.jsonl"
    write_video(video, shared_data)
    assert cli("build-db", people, scrfd, onnx_recognizer, db).exit_code == 0
    for top_k in (2, 9):
        result, frames, tracks = run_video(cli, video, db, scrfd, onnx_recognizer, out, "--every", 13,
                                           "--top-k", top_k, "--threshold", 0.1)  # fmt: skip
        assert result.exit_code == 0, result.output
        faces = [face for frame in frames for face in frame["faces"]]
        assert len(faces) == 5 and any(face["identity"] is not None for face in faces)
        for face in faces:
            assert_candidates(face, top_k, 4)
        for track in tracks:  # the summary keeps the best top-1 similarity of its frames
            assert track["best_similarity"] == max(f["similarity"] for f in faces if f["track"] == track["track"])
    first = cv2.VideoCapture(str(video)).read()[1]
    photo = tmp_path / "frame0.png"
    cv2.imwrite(str(photo), first)
    photo_out = tmp_path / "photo.jsonl"
    args = ("--top-k", 9, "--threshold", 0.1, "--out", photo_out)
    assert cli("recognize", photo, db, scrfd, onnx_recognizer, *args).exit_code == 0
    (record,) = [json.loads(line) for line in photo_out.read_text().splitlines()]
    strip = lambda face: {k: v for k, v in face.items() if k != "track"}  # noqa: E731
    assert [strip(face) for face in frames[0]["faces"]] == record["faces"]


def test_video_usage_errors(cli, scrfd, people, tmp_path):
    """Refused before any model is loaded: exit 2."""
    video, db = tmp_path / "clip.avi", tmp_path / "g.h5"
    video.write_bytes(b"")
    db.write_bytes(b"")
    result = cli("recognize", video, db, scrfd, scrfd, "--save-annotated", video)
    assert result.exit_code == 2 and f"Error: {video}: is the video (an input)" in result.output
    result = cli("recognize", video, db, scrfd, scrfd, "--save-annotated", tmp_path / "a.gif")
    assert result.exit_code == 2 and "a.gif: an annotated video ends in .mp4, .avi, .mkv" in result.output
    result = cli("recognize", video, db, scrfd, scrfd, "--format", "csv")
    assert result.exit_code == 2 and "--format csv is for photos" in result.output
    result = cli("recognize", people, db, scrfd, scrfd, "--every", 3)
    assert result.exit_code == 2 and "--every applies to a video" in result.output
    result = cli("recognize", people / "s1/1.pgm", db, scrfd, scrfd, "--save-annotated", video)
    assert result.exit_code == 2 and "is a file; photos' annotated copies go to a folder" in result.output


def test_reader_every_truncated_and_unreadable_files(shared_data, tmp_path):
    """Frames of a real MJPG .avi: all, every 3rd, those before a cut (with a warning); a file with none is refused."""
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (92, 112))
    for k in range(1, 11):
        writer.write(cv2.imread(str(shared_data / f"faces/orl/s1/{k}.pgm")))
    writer.release()
    frames = list(VideoReader(str(video)).open())
    assert [f.index for f in frames] == list(range(10)) and frames[3].time == 0.3
    assert frames[0].image.shape == (112, 92, 3)
    reader = VideoReader(str(video), every=3).open()
    assert [(f.index, f.time) for f in reader] == [(0, 0.0), (3, 0.3), (6, 0.6), (9, 0.9)] and not reader.warnings
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    reader = VideoReader(str(cut)).open()
    n = len(list(reader))
    assert 2 <= n < 10 and reader.warnings == [f"{cut}: truncated or corrupt: read {n} of the 10 frames its header "
                                               "declares"]  # fmt: skip
    cut.write_bytes(video.read_bytes()[:300])
    with pytest.raises(DataFormatError, match=f"^{cut}: cannot open video \\(300 bytes\\): not a video OpenCV"):
        VideoReader(str(cut)).open()
    with pytest.raises(DataFormatError, match="over the --max-pixels limit of 0.01 MP"):
        VideoReader(str(video), max_pixels=10_000).open()


@pytest.mark.slow  # the session's ORL recognizer (5 minutes of training); quick sibling: test_tracks_truncation...
def test_video_identities_by_vote(cli, shared_data, orl_recognizer, scrfd, people, tmp_path):
    """One track per appearance, named as the person it shows, or unknown for the strangers (s5, s6). All six people
    are among the recognizer's training people, whom it tells apart; its calibrated threshold decides."""
    video, db, out = tmp_path / "clip.mp4", tmp_path / "g.h5", tmp_path / "out.jsonl"
    write_video(video, shared_data, "mp4v")
    assert cli("build-db", people, scrfd, orl_recognizer, db).exit_code == 0
    result, frames, tracks = run_video(cli, video, db, scrfd, orl_recognizer / "recognizer.onnx", out)
    assert result.exit_code == 0, result.output
    print([(t["identity"], t["votes"], t["best_similarity"]) for t in tracks])
    key = lambda span: (span[0], span[1], span[2] or "")  # noqa: E731  (tracks of one frame: in detection order)
    assert sorted([(t["first_frame"], t["last_frame"], t["identity"]) for t in tracks], key=key) == sorted(
        expected_tracks(), key=key
    )
    for track in tracks:
        if track["identity"] is not None:
            assert max(track["votes"], key=track["votes"].get) == track["identity"]
            assert track["best_similarity"] == max(
                f["similarity"] for r in frames for f in r["faces"] if f["track"] == track["track"]
            )
    for face in (face for frame in frames for face in frame["faces"]):
        assert_candidates(face, 5, 4)  # --top-k 5 by default, 4 people enrolled


def test_iou_matrix_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0, 1], [0, 0, 0.04]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_assign_takes_the_best_pairs_first():
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert greedy_assign(scores, scores > 0.5) == [(0, 0)]  # row 1's only allowed partner is taken
    assert greedy_assign(scores, scores > 0.0) == [(0, 0), (1, 1)]
    assert greedy_assign(scores, np.zeros_like(scores, bool)) == []


def unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def test_tracker_links_by_overlap_and_appearance_and_votes():
    tracker = Tracker(0.5, TrackerSettings(max_gap=1.0, min_fraction=0.5))
    alice, bob = unit(1, 0, 0), unit(0, 1, 0)
    box = np.array([[0, 0, 10, 10.0]])
    ids, _ = tracker.update(0, 0.0, box, alice[None], [("alice", 0.9)])
    assert ids == [1]
    ids, _ = tracker.update(1, 0.1, box + 1, alice[None], [("alice", 0.4)])  # overlapping, same face
    assert ids == [1]
    ids, _ = tracker.update(2, 0.2, box + 1, bob[None], [("bob", 0.9)])  # same place, another face: a new track
    assert ids == [2]
    ids, _ = tracker.update(3, 0.3, box + 100, alice[None], [("alice", 0.3)])  # moved far, same face: re-identified
    assert ids == [1]
    _, ended = tracker.update(4, 1.25, np.zeros((0, 4)), np.zeros((0, 3)), [])
    assert [t.id for t in ended] == [2]  # bob unseen for 1.05 s; alice (0.95 s) not yet
    (track,) = tracker.finish()
    summary = track.summary(0.5)
    # alice was top-1 in 3 frames, at or above 0.5 in 1 of them: fewer than half, so unknown
    assert summary["identity"] is None and summary["votes"] == {"alice": 1.6} and summary["frames"] == 3
    assert summary["best_similarity"] == 0.9 and track.identity(0.3) == "alice"
    assert (summary["first_frame"], summary["last_frame"], summary["last_time"]) == (0, 3, 0.3)


class FlakyCapture:
    """A stand-in for cv2.VideoCapture of a stream that gives `frames` frames per connection, and no connection
    after `connections`."""

    opened = 0

    def __init__(self, source: str, frames: int = 3, connections: int = 2) -> None:
        FlakyCapture.opened += 1
        self.left = frames if FlakyCapture.opened <= connections else 0
        self.ok = FlakyCapture.opened <= connections

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.ok

    def get(self, prop: int) -> float:
        import cv2

        return {cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_FRAME_WIDTH: 4, cv2.CAP_PROP_FRAME_HEIGHT: 2}.get(prop, 0.0)

    def grab(self) -> bool:
        self.left -= 1
        return self.left >= 0

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((2, 4, 3), np.uint8)

    def release(self) -> None:
        pass


def test_dropped_stream_is_retried_then_ends_with_a_warning():
    FlakyCapture.opened = 0
    reader = VideoReader("rtsp://camera/1", retries=2, backoff=0.0, open_capture=FlakyCapture).open()
    frames = list(reader)
    # 3 frames, a drop, reconnected: 3 more; then two failed reconnections and the end
    assert [f.index for f in frames] == list(range(6)) and FlakyCapture.opened == 4
    assert reader.warnings == ["rtsp://camera/1: stream dropped; gave up after 2 retries (6 frames read)"]


class RemoteFile(FlakyCapture):
    """A URL of a file that declares its 3 frames."""

    def get(self, prop: int) -> float:
        import cv2

        return 3.0 if prop == cv2.CAP_PROP_FRAME_COUNT else super().get(prop)


def test_remote_file_ends_after_its_frames_without_retries():
    FlakyCapture.opened = 0
    reader = VideoReader("http://host/clip.mp4", retries=2, backoff=0.0, open_capture=RemoteFile).open()
    assert [f.index for f in reader] == [0, 1, 2] and FlakyCapture.opened == 1 and not reader.warnings
