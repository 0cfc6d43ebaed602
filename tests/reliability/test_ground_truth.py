"""Absurd ground truth in a label.txt (a coordinate of 1e30, a box far outside its photo, a landmark miles away, a
number beyond float32): eval-detect stops with one line naming label.txt and the line, and inspect lists the very
same words, because both go through facekit.data.labels (read_labels, then face_problems against the photo's size)."""

from __future__ import annotations

import pytest

from .helpers import clean_error, copy_tree

VAL = "layouts/detection_train_data/val"
IMAGE = "the 501x700 image '1--pseudo/kit_with_rose.jpg'"
OUTSIDE = f"lies outside {IMAGE} by more than 10% of its width or height"
LANDMARKS = (
    "276.728 130.554 0.000 317.289 129.624 0.000 {} 154.349 0.000 284.159 172.697 0.000 317.249 171.657 0.000 0.830"
)

# line 7 of val/label.txt, the second face of '# 1--pseudo/kit_with_rose.jpg' (501 x 700), made absurd; the message
CASES = {
    "x-1e30": ("1e30 75.0 91.1 127.7", f"face box (x1, y1, x2, y2) = (1e+30, 75, 1e+30, 202.7) {OUTSIDE}"),
    "width-1e30": ("260.3 75.0 1e30 127.7", f"face box (x1, y1, x2, y2) = (260.3, 75, 1e+30, 202.7) {OUTSIDE}"),
    "far-outside": ("5260.3 75.0 91.1 127.7", f"face box (x1, y1, x2, y2) = (5260.3, 75, 5351.4, 202.7) {OUTSIDE}"),
    "above": ("260.3 -175.0 91.1 127.7", f"face box (x1, y1, x2, y2) = (260.3, -175, 351.4, -47.3) {OUTSIDE}"),
    "landmark": ("260.3 75.0 91.1 127.7 " + LANDMARKS.format(9000), f"nose tip (9000, 154.349) {OUTSIDE}"),
    "float32-overflow": ("1e39 75.0 91.1 127.7", "number beyond float32's range (3.4e38) in '1e39 75.0 91.1 127.7'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_absurd_ground_truth(cli, shared_data, scrfd, tmp_path, case):
    """eval-detect fails with `Error: val/label.txt:7: ...` (exit 1, no traceback, no metrics written) and inspect
    lists the same line (the real labels pass both: tests/test_inspect.py, tests/test_evaluate_detect.py)."""
    val = copy_tree(shared_data / VAL, tmp_path / "val")
    label = val / "label.txt"
    lines = label.read_text().splitlines()
    text, message = CASES[case]
    lines[6] = text
    label.write_text("\n".join(lines) + "\n")
    problem = f"{label}:7: {message}"

    out = tmp_path / "metrics"
    line = clean_error(cli("eval-detect", val, "--model", scrfd, "--out", out), 1)
    assert line == f"Error: {problem}"
    assert not out.exists()
    result = cli("inspect", val)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"  - {problem}\n" in result.output, result.output


def test_faces_poking_out_a_little_are_kept(cli, shared_data, scrfd, tmp_path):
    """A box 8 px past the left edge with a mouth corner 4 px past the right edge (as WIDER-style labels and SCRFD's
    points of a face cut by the border do): within the tolerance, eval-detect evaluates it and inspect passes."""
    val = copy_tree(shared_data / VAL, tmp_path / "val")
    label = val / "label.txt"
    lines = label.read_text().splitlines()
    lines[6] = "-8 75.0 91.1 127.7 " + LANDMARKS.format(292.410).replace("317.249", "505")
    label.write_text("\n".join(lines) + "\n")
    result = cli("eval-detect", val, "--model", scrfd)
    assert result.exit_code == 0 and "3 images, 6 faces" in result.output, result.output
    result = cli("inspect", val)
    assert result.exit_code == 0 and "problems: none" in result.output, result.output
