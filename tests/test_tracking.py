"""The tracker's motion model: SORT's Kalman filter on each track's box, predicted by elapsed seconds.

Synthetic boxes and embeddings; the tracker on real video (ORL faces, SCRFD) is in tests/test_video.py.
"""

import numpy as np
import pytest

from facekit.gallery.tracking import BoxFilter, Tracker, TrackerSettings, box_to_z, iou_matrix, z_to_box

FPS, EVERY = 30.0, 3  # a 30 fps video with --every 3: processed frames 0.1 s apart
SIZE = 40.0  # face box width and height, pixels
COS = 0.55  # each frame's embedding vs its person: below TrackerSettings.reidentify, so links need overlap


def noisy_faces(person: int, frames: int, dim: int = 256) -> np.ndarray:
    """Embeddings [frames, dim] of one person: each at cosine COS to the person's axis, the rest on an axis of its
    own (so two frames of one person agree at COS**2 = 0.30, a track's running mean at most COS)."""
    e = np.zeros((frames, dim))
    e[:, person] = COS
    e[np.arange(frames), 8 + person * frames + np.arange(frames)] = np.sqrt(1 - COS**2)
    return e


def moving_box(frame: int, x0: float, speed: float, y0: float = 100.0) -> np.ndarray:
    """Box [1, 4] at `frame` of a face moving `speed` pixels a frame along x from x0."""
    x = x0 + speed * frame
    return np.array([[x, y0, x + SIZE, y0 + SIZE]])


def static_boxes(monkeypatch) -> None:
    """The tracker as it was before the motion model: each track's box as last updated, whatever the time."""
    monkeypatch.setattr(BoxFilter, "predict", lambda self, time: z_to_box(self.x))


def test_box_and_measurement_by_hand():
    np.testing.assert_allclose(box_to_z([0, 0, 20, 10]), [10, 5, 200, 2])
    np.testing.assert_allclose(z_to_box([10, 5, 200, 2, 7, 7, 7]), [0, 0, 20, 10])
    np.testing.assert_allclose(z_to_box([10, 5, -3, 2]), [10, 5, 10, 5])  # no area left: a point, not NaN


def test_filter_learns_the_velocity_and_predicts_by_elapsed_time():
    motion = BoxFilter(np.array([0, 0, 40, 40.0]), 0.0)
    for k in range(1, 6):  # 150 px/s to the right, frames 0.1 s apart
        motion.update(0.1 * k, np.array([15 * k, 0, 15 * k + 40, 40.0]))
    np.testing.assert_allclose(motion.x[4:6], [150, 0], atol=3)  # velocities per second
    before = motion.x.copy()
    np.testing.assert_allclose(motion.predict(0.5 + 0.4), [135, 0, 175, 40], atol=2)  # 0.4 s on: 60 px further
    np.testing.assert_array_equal(motion.x, before)  # predicting leaves the filter as it was


@pytest.mark.parametrize("motion", [True, False], ids=["motion", "last-box"])
def test_moving_face_keeps_one_track_across_a_missed_detection(monkeypatch, motion):
    """A face moving 5 px a frame, every 3rd frame processed (15 px apart: IoU 0.45), not detected at frame 18: at
    frame 21 it is 30 px (IoU 0.14) from where it was last seen, but where its track predicts it."""
    if not motion:
        static_boxes(monkeypatch)
    tracker, faces = Tracker(0.5), noisy_faces(0, 16)
    ids = []
    for k, frame in enumerate(range(0, 48, EVERY)):
        if frame == 18:
            ids.append(tracker.update(frame, frame / FPS, np.zeros((0, 4)), np.zeros((0, faces.shape[1])), [])[0])
            continue
        box = moving_box(frame, 10.0, 5.0)
        if frame == 21:  # the old rule's test: the last box too far, the embedding not close enough to re-identify
            (track,) = tracker.live
            assert iou_matrix(track.box, box)[0, 0] < tracker.settings.iou
            assert track.embedding @ faces[k] < tracker.settings.reidentify
        ids.append(tracker.update(frame, frame / FPS, box, faces[k][None], [("alice", 0.9)])[0])
    seen = sorted({i for frame_ids in ids for i in frame_ids})
    assert seen == ([1] if motion else [1, 2])  # without the motion model the track breaks at frame 21
    track = tracker.finish()[-1]  # the one track, or the one that took over
    np.testing.assert_array_equal(track.box, moving_box(45, 10.0, 5.0)[0])  # the detection's box, not the filter's


@pytest.mark.parametrize("distinct", [True, False], ids=["different-faces", "same-embeddings"])
def test_two_faces_crossing_keep_their_tracks(distinct):
    """Faces walking towards each other at 5 px a frame, every 3rd frame processed, passing at frame 33: each keeps
    its track, whether their embeddings differ or are alike (then the boxes alone tell them apart)."""
    tracker = Tracker(0.5)
    left, right = noisy_faces(0, 30), noisy_faces(1 if distinct else 0, 30)
    if not distinct:
        right[:, 8:] = np.roll(right[:, 8:], 100, axis=1)  # the same person's axis, frames of their own
    for k, frame in enumerate(range(0, 66, EVERY)):
        boxes = np.concatenate([moving_box(frame, 0.0, 5.0), moving_box(frame, 330.0, -5.0, y0=110.0)])
        order = [1, 0] if k % 2 else [0, 1]  # detections come in no particular order
        ids, _ = tracker.update(frame, frame / FPS, boxes[order], np.stack([left[k], right[k]])[order], [None, None])
        assert [ids[order.index(0)], ids[order.index(1)]] == [1, 2], f"frame {frame}"


def test_fast_shrinking_box_predicts_finite_boxes():
    """A face whose area falls 30,000 px^2 a second (100 px wide to 32 px in 0.3 s) would have no area left 0.04 s
    later: its predicted boxes keep their last area, finite (SORT's rule: the area velocity is dropped, rather than
    boxes of no area or NaN), and so does the filter."""
    tracker, faces = Tracker(0.5), noisy_faces(0, 4)
    for k, area in enumerate([10000.0, 7000.0, 4000.0, 1000.0]):
        width = np.sqrt(area)
        ids, _ = tracker.update(3 * k, 0.1 * k, np.array([[0, 0, width, width]]), faces[k][None], [None])
        assert ids == [1]  # linked by overlap with the predicted box, so the filter learnt the shrinking
    (track,) = tracker.live
    motion = track.motion
    assert motion.x[6] < -20000 and motion.x[2] + motion.x[6] * 0.05 < 0  # the area without the rule, 0.05 s on
    for later in (0.35, 0.5, 0.8, 5.0):
        box = motion.predict(later)
        assert np.isfinite(box).all() and (box[2] - box[0]) * (box[3] - box[1]) == pytest.approx(motion.x[2]), box
    motion.update(0.5, np.array([0, 0, 10, 10.0]))
    assert np.isfinite(motion.x).all() and np.isfinite(motion.P).all() and motion.x[2] > 0
    assert np.isfinite(motion.predict(1.0)).all()


def test_unseen_track_predicts_on_until_max_gap_ends_it():
    """A face moving 100 px/s, hidden for 0.9 s (under max_gap: found where it went), then for 1.2 s (over: ended)."""
    tracker, faces = Tracker(0.5, TrackerSettings(max_gap=1.0)), noisy_faces(0, 6)
    box = lambda t: np.array([[100 * t, 0, 100 * t + SIZE, SIZE]])  # noqa: E731
    for k, t in enumerate([0.0, 0.1, 0.2, 1.1]):
        ids, ended = tracker.update(k, t, box(t), faces[k][None], [None])
        assert ids == [1] and not ended
    ids, ended = tracker.update(4, 2.3, box(2.3), faces[4][None], [None])
    assert ids == [2] and [t.id for t in ended] == [1] and ended[0].last_time == 1.1


@pytest.mark.parametrize("motion", [True, False], ids=["motion", "last-box"])
def test_orl_face_moving_past_a_missed_frame_on_scrfd_boxes(monkeypatch, shared_data, scrfd, motion):
    """Real detections: an ORL photo (scaled 2x) crossing a 640 x 360 frame at 14 px a frame of 30 fps, every 3rd
    frame processed, hidden at frame 15; SCRFD-500M's boxes (with their jitter) feed the tracker. One track with the
    motion model; without it, the track breaks after the hidden frame (embeddings as in the synthetic tests)."""
    import cv2

    from facekit.runtime.onnx_detector import OnnxDetector

    if not motion:
        static_boxes(monkeypatch)
    detector, tracker = OnnxDetector(scrfd), Tracker(0.5)
    face = cv2.imread(str(shared_data / "faces/orl/s4/8.pgm"))
    face = cv2.resize(face, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    wall = np.tile(np.linspace(40, 200, 640)[None, :, None], (360, 1, 3)).astype(np.uint8)
    frames = range(0, 30, EVERY)
    embeddings, seen = noisy_faces(0, len(frames)), set()
    for k, frame in enumerate(frames):
        image, x = wall.copy(), 10 + 14 * frame
        if frame != 15:
            image[60 : 60 + face.shape[0], x : x + face.shape[1]] = face
        boxes = np.array([f.box for f in detector.detect(image)]).reshape(-1, 4)
        assert len(boxes) == (frame != 15), f"frame {frame}: {len(boxes)} faces"
        if frame == 18:
            (track,) = tracker.live
            assert iou_matrix(track.box, boxes)[0, 0] < tracker.settings.iou  # the last box is too far behind
        ids, _ = tracker.update(
            frame, frame / FPS, boxes, embeddings[k][None].repeat(len(boxes), 0), [None] * len(boxes)
        )
        seen.update(ids)
    assert sorted(seen) == ([1] if motion else [1, 2])
