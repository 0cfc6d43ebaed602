"""Detection evaluation: AP, NME and the WIDER FACE protocol on cases worked by hand; `facekit eval-detect` on the
real val split with the published Pytorch_Retinaface MobileNet-0.25 weights."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from scipy.io import savemat

from facekit.detection.evaluate import render_pr_curve
from facekit.detection.metrics import (
    FALSE_POSITIVE,
    IGNORED,
    APResult,
    ImageDetections,
    ImageTruth,
    average_precision,
    interpolated_ap,
    landmark_nme,
    match_detections,
)
from facekit.detection.wider import read_wider_ground_truth, wider_face_ap
from facekit.errors import DataFormatError, MissingDataError

WEIGHTS = "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth"
VAL = "layouts/detection_train_data/val"


def dets(boxes: list, scores: list, landmarks: np.ndarray | None = None) -> ImageDetections:
    return ImageDetections(np.array(boxes, float).reshape(-1, 4), np.array(scores, float), landmarks)


def truth(boxes: list, ignore: list | None = None, **kwargs) -> ImageTruth:
    return ImageTruth(np.array(boxes, float).reshape(-1, 4), None if ignore is None else np.array(ignore), **kwargs)


# --- AP by hand ----------------------------------------------------------------------------------------------


def test_ap_three_detections_two_faces():
    """Pooled by score: 0.9 TP (image A), 0.8 FP (A, background), 0.7 TP (B, IoU 90/110).
    precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; envelope 1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6."""
    detections = [dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8]), dets([[1, 0, 11, 10]], [0.7])]
    result = average_precision(detections, [truth([[0, 0, 10, 10]]), truth([[0, 0, 10, 10]])])
    assert result.ap == pytest.approx(5 / 6)
    np.testing.assert_allclose(result.precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(result.recall, [1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(result.thresholds, [0.9, 0.8, 0.7])
    assert (result.num_gt, result.num_det) == (2, 3)


def test_ap_order_is_pooled_over_images():
    """Same detections, the FP now strongest: FP, TP, TP -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1;
    envelope 2/3 everywhere -> AP = 2/3."""
    detections = [dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.8, 0.95]), dets([[1, 0, 11, 10]], [0.7])]
    result = average_precision(detections, [truth([[0, 0, 10, 10]]), truth([[0, 0, 10, 10]])])
    assert result.ap == pytest.approx(2 / 3)


def test_ap_duplicates_and_ignored_faces():
    """Faces g0, g1 (ignored), g2. 0.9 on g1 -> ignored (left out), 0.8 on g0 TP, 0.7 on g0 again -> duplicate FP,
    0.6 on g2 TP: TP FP TP on 2 faces -> AP 5/6. Without the ignore mask g1 counts: TP TP FP TP on 3 faces,
    precision 1, 1, 2/3, 3/4 at recall 1/3, 2/3, 2/3, 1 -> AP = 2/3 + 1/3 * 3/4 = 11/12."""
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    detections = [dets([[20, 0, 30, 10], [0, 0, 10, 10], [0, 0, 10, 9], [40, 0, 50, 10]], [0.9, 0.8, 0.7, 0.6])]
    ignored = average_precision(detections, [truth(gt, [False, True, False])])
    assert ignored.ap == pytest.approx(5 / 6) and (ignored.num_gt, ignored.num_det) == (2, 3)
    counted = average_precision(detections, [truth(gt)])
    assert counted.ap == pytest.approx(11 / 12) and (counted.num_gt, counted.num_det) == (3, 4)


def test_match_takes_the_best_face_even_when_taken():
    """VOC's rule: a detection whose best face is already matched is a duplicate, not moved to its second best.
    IoU exactly 0.5 counts; 0.45 does not."""
    gt = np.array([[0, 0, 10, 10], [8, 0, 18, 10]], float)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 5], [0, 0, 10, 4.5]], float)
    outcome = match_detections(boxes, gt, np.zeros(2, bool), 0.5)
    assert outcome.tolist() == [0, FALSE_POSITIVE, FALSE_POSITIVE, FALSE_POSITIVE]
    assert match_detections(boxes[2:], gt, np.array([True, False]), 0.5).tolist() == [IGNORED, FALSE_POSITIVE]


def test_match_inclusive_pixels():
    """[0,0,9,9] vs [0,0,9,4]: 10x10 and 10x5 pixels inclusive -> IoU 50/100 = 0.5; continuous 36/81 = 0.44."""
    boxes, gt = np.array([[0, 0, 9, 9]], float), np.array([[0, 0, 9, 4]], float)
    assert match_detections(boxes, gt, np.zeros(1, bool), 0.5, pixel_offset=1.0).tolist() == [0]
    assert match_detections(boxes, gt, np.zeros(1, bool), 0.5).tolist() == [FALSE_POSITIVE]


def test_interpolated_ap_envelope():
    """recall .2 .4 .4 .8, precision 1 .5 .6 .4 -> envelope 1 .6 .6 .4 -> .2 * 1 + .2 * .6 + .4 * .4 = .48."""
    assert interpolated_ap(np.array([0.2, 0.4, 0.4, 0.8]), np.array([1, 0.5, 0.6, 0.4])) == pytest.approx(0.48)


def test_ap_edge_cases():
    assert average_precision([dets([], [])], [truth([[0, 0, 10, 10]])]).ap == 0.0
    no_faces = average_precision([dets([[0, 0, 10, 10]], [0.9])], [truth([])])
    assert math.isnan(no_faces.ap) and no_faces.num_det == 1
    assert no_faces.as_dict()["ap"] is None
    with pytest.raises(ValueError, match="2 detection lists for 1"):
        average_precision([dets([], []), dets([], [])], [truth([])])


# --- NME by hand -----------------------------------------------------------------------------------------------


def test_landmark_nme():
    """Face A 100x64 (sqrt(w h) = 80), every point off by (3, 4) -> 5 / 80 = 0.0625. Face B 50x50 (50), one point
    off by 10 -> mean error 2 -> 0.04. Face C is matched but has no landmarks; the FP's points do not count.
    NME = (0.0625 + 0.04) / 2 = 0.05125 over 2 faces."""
    points_a = np.arange(10, dtype=float).reshape(5, 2) * 5
    points_b = np.arange(10, dtype=float).reshape(5, 2) + 200
    gt_points = np.stack([points_a, points_b, np.full((5, 2), -1.0)])
    gt = truth(
        [[0, 0, 100, 64], [200, 200, 250, 250], [400, 0, 450, 50]],
        landmarks=gt_points,
        landmark_mask=np.array([True, True, False]),
    )
    off_b = points_b.copy()
    off_b[2, 0] += 10
    predicted = np.stack([points_a + [3, 4], off_b, np.zeros((5, 2)), np.zeros((5, 2))])
    detections = dets([[0, 0, 100, 64], [200, 200, 250, 250], [400, 0, 450, 50], [600, 0, 650, 50]], [0.9] * 4)
    detections = ImageDetections(detections.boxes, detections.scores, predicted)
    result = landmark_nme([detections], [gt])
    assert result.nme == pytest.approx(0.05125) and result.num_faces == 2
    assert landmark_nme([dets([[0, 0, 100, 64]], [0.9])], [gt]).num_faces == 0  # a detector without key points


# --- WIDER FACE protocol on a tiny synthetic ground truth --------------------------------------------------------


def cells(items: list) -> np.ndarray:
    """A MATLAB cell column (object array [N, 1]), as in the official .mat files."""
    column = np.empty((len(items), 1), object)
    for i, item in enumerate(items):
        column[i, 0] = item
    return column


def write_wider_mats(folder, events: dict[str, dict[str, list]], levels: dict[str, dict[str, list[int]]]) -> None:
    """events: {event: {file: [[x, y, w, h], ...]}}; levels: {level: {file: 1-based counted face indices}}."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(events)
    savemat(
        folder / "wider_face_val.mat",
        {
            "event_list": cells(names),
            "file_list": cells([cells(list(events[e])) for e in names]),
            "face_bbx_list": cells(
                [cells([np.array(b, float).reshape(-1, 4) for b in events[e].values()]) for e in names]
            ),
        },
    )
    for level, counted in levels.items():
        per_event = [cells([np.array(counted[f], float).reshape(-1, 1) for f in events[e]]) for e in names]
        savemat(folder / f"wider_{level}_val.mat", {"gt_list": cells(per_event)})


TINY_EVENTS = {
    "0--Parade": {
        "a": [[10, 10, 40, 40], [100, 10, 40, 40], [200, 10, 8, 8]],  # f1, f2, f3 (tiny)
        "b": [[10, 10, 30, 30]],  # g1
        "c": [],  # no faces: its detections are not counted (the official tool skips such images)
        "d": [[0, 0, 20, 20]],  # no detections given: left out and listed
    }
}
TINY_LEVELS = {
    "easy": {"a": [2], "b": [], "c": [], "d": [1]},
    "medium": {"a": [1, 2], "b": [1], "c": [], "d": [1]},
    "hard": {"a": [1, 2, 3], "b": [1], "c": [], "d": [1]},
}


def test_wider_protocol_by_hand(tmp_path):
    """Raw scores 0.9 .. 0.3 normalise to (s - 0.3) / 0.6: d1 (on f1) 1.0, d3 (FP) 0.917, e1 (on g1) 0.833,
    d2 (on f2) 0.5, e2 (FP) 0.0; c's detection (0.667) is never counted.
    hard (4 faces): TP FP TP TP FP -> precision 1, 1/2, 2/3, 3/4, 3/5 at recall 1/4, 1/4, 1/2, 3/4, 3/4
      -> AP = 1/4 * 1 + 1/2 * 3/4 = 0.625 (0.5667 if c's FP counted).
    medium (f1, f2, g1): same order -> AP = 1/3 * 1 + 2/3 * 3/4 = 5/6.
    easy (f2 only): d1, e1 ignored; d3 FP, d2 TP, e2 FP -> precision 1/2 at recall 1 -> AP 0.5."""
    write_wider_mats(tmp_path, TINY_EVENTS, TINY_LEVELS)
    images = read_wider_ground_truth(tmp_path)
    assert [im.key for im in images] == ["0--Parade/a", "0--Parade/b", "0--Parade/c", "0--Parade/d"]
    np.testing.assert_allclose(images[0].boxes[2], [200, 10, 208, 18])
    assert images[0].counted["medium"].tolist() == [True, True, False]
    detections = {
        "0--Parade/a": dets([[10, 10, 50, 50], [100, 10, 140, 50], [300, 300, 340, 340]], [0.9, 0.6, 0.85]),
        "0--Parade/b": dets([[10, 10, 40, 40], [100, 100, 120, 120]], [0.8, 0.3]),
        "0--Parade/c": dets([[0, 0, 30, 30]], [0.7]),
    }
    result = wider_face_ap(detections, images)
    assert result.levels["hard"].ap == pytest.approx(0.625)
    assert result.levels["medium"].ap == pytest.approx(5 / 6)
    assert result.levels["easy"].ap == pytest.approx(0.5)
    assert [result.levels[k].num_gt for k in ("easy", "medium", "hard")] == [1, 3, 4]
    assert result.levels["hard"].num_det == 5 and result.levels["easy"].num_det == 3
    assert result.images == 3 and result.missing == ["0--Parade/d"]
    # thresholds at which only ignored detections are kept are left out of the curve
    easy = result.levels["easy"]
    assert easy.precision[0] == 0.0 and easy.thresholds[0] == pytest.approx(0.916)
    assert len(result.levels["hard"].thresholds) == 1000


def test_wider_ground_truth_errors(tmp_path):
    write_wider_mats(tmp_path, TINY_EVENTS, TINY_LEVELS)
    (tmp_path / "wider_hard_val.mat").unlink()
    with pytest.raises(MissingDataError, match="missing WIDER FACE ground truth wider_hard_val.mat"):
        read_wider_ground_truth(tmp_path)
    write_wider_mats(tmp_path, TINY_EVENTS, {**TINY_LEVELS, "hard": {**TINY_LEVELS["hard"], "b": [2]}})
    with pytest.raises(DataFormatError, match=r"hard face index out of 1..1 in 0--Parade/b"):
        read_wider_ground_truth(tmp_path)
    savemat(tmp_path / "wider_face_val.mat", {"something_else": np.zeros(3)})
    with pytest.raises(DataFormatError, match="not the WIDER FACE ground-truth structure"):
        read_wider_ground_truth(tmp_path)
    write_wider_mats(tmp_path, TINY_EVENTS, TINY_LEVELS)
    with pytest.raises(MissingDataError, match="none of the 4 WIDER FACE ground-truth images"):
        wider_face_ap({"x/y": dets([], [])}, read_wider_ground_truth(tmp_path))


def test_render_pr_curve():
    curve = APResult(0.75, np.array([1.0, 0.5, 0.75]), np.array([0.25, 0.25, 0.75]), np.array([0.9, 0.8, 0.7]), 4, 3)
    empty = APResult(math.nan, np.zeros(0), np.zeros(0), np.zeros(0), 0, 0)
    image = render_pr_curve({"ours": curve, "none": empty}, size=(640, 480))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert (image != 255).any(axis=2).mean() > 0.02  # axes, grid, text and the line are drawn


# --- real data -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnet_dir(shared_data, tmp_path_factory):
    from facekit.detection.weights import import_pytorch_retinaface

    out = tmp_path_factory.mktemp("mnet")
    import_pytorch_retinaface(shared_data / WEIGHTS, out)
    return out


@pytest.fixture
def eval_cli(cli):
    """`facekit eval-detect ...` through the real command group (errors become one-line messages)."""
    return lambda *args: cli("eval-detect", *args)


def copy_split(shared_data, tmp_path):
    split = tmp_path / "val"
    shutil.copytree(shared_data / VAL, split)
    return split


def test_evaluate_val_split(shared_data, mnet_dir):
    """Measured on CPU: AP@0.5 1.0 (all 6 faces found before any false positive), NME 0.025 at max size 1280."""
    from facekit.detection.evaluate import evaluate_split
    from facekit.runtime.detector import load_face_detector

    metrics = evaluate_split(shared_data / VAL, load_face_detector(mnet_dir))
    assert (metrics.images, metrics.skipped, metrics.ap.num_gt) == (3, [], 6)
    assert metrics.ap.ap >= 0.95
    assert metrics.ap.num_det >= 6 and metrics.ap.thresholds.min() >= 0.02
    assert metrics.nme.num_faces == 6 and 0 < metrics.nme.nme < 0.05
    json.dumps(metrics.as_dict(), allow_nan=False)


def test_cli_writes_metrics_and_plot(eval_cli, shared_data, mnet_dir, tmp_path):
    import cv2

    result = eval_cli(shared_data / VAL, "--model", mnet_dir, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "AP@0.5" in result.stdout and "NME" in result.stdout and "3 images, 6 faces" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "pr_curve.png"]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["ap"] >= 0.95 and metrics["faces"] == 6 and metrics["nme_faces"] == 6 and metrics["wider"] is None
    assert len(metrics["pr_curve"]["recall"]) == metrics["detections"]
    image = cv2.imread(str(tmp_path / "out/pr_curve.png"))
    assert image is not None and image.shape == (600, 720, 3)


def test_cli_wider_protocol_on_the_val_split(eval_cli, shared_data, mnet_dir, tmp_path):
    """The val split described as WIDER FACE ground truth (event 1--pseudo, every face counted at every level),
    plus one image the split does not have: all levels find every face; the absent image is reported."""
    from facekit.data.labels import read_labels

    _, labels = read_labels(shared_data / VAL / "label.txt")
    files = {im.path.split("/")[1][:-4]: [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in im.boxes] for im in labels}
    files["not_here"] = [[0, 0, 50, 50]]
    counted = {name: list(range(1, len(boxes) + 1)) for name, boxes in files.items()}
    write_wider_mats(tmp_path / "gt", {"1--pseudo": files}, {level: counted for level in ("easy", "medium", "hard")})
    result = eval_cli(shared_data / VAL, "--model", mnet_dir, "--wider-gt", tmp_path / "gt", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "WIDER FACE  easy 1.0000  medium 1.0000  hard 1.0000  (3 images)" in result.stdout
    assert "1 WIDER FACE ground-truth images were not evaluated (first: 1--pseudo/not_here)" in result.stderr
    wider = json.loads((tmp_path / "o/metrics.json").read_text())["wider"]
    assert wider["missing"] == 1 and wider["hard"]["faces"] == 6


def test_missing_image_is_one_line_error(eval_cli, shared_data, mnet_dir, tmp_path):
    split = copy_split(shared_data, tmp_path)
    (split / "images/1--pseudo/kit_with_rose.jpg").unlink()
    result = eval_cli(split, "--model", mnet_dir)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "1 of 3 images missing under" in result.output and "1--pseudo/kit_with_rose.jpg (line 5)" in result.output


def test_unreadable_image_skipped_and_reported(eval_cli, shared_data, mnet_dir, tmp_path):
    split = copy_split(shared_data, tmp_path)
    (split / "images/1--pseudo/johnsnow_test1.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    result = eval_cli(split, "--model", mnet_dir, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 images, 5 faces" in result.stdout
    assert "skipped 1 unreadable images" in result.stderr and "johnsnow_test1.jpg: cannot decode image" in result.stderr
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["images"] == 2 and len(metrics["skipped"]) == 1 and metrics["faces"] == 5
