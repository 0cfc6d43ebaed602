"""Bad training data through train-detect, train-recognize, eval-detect and inspect: a one-line error (exit 1, no
traceback) that names the file and the line, key or item and says what was expected; inspect lists the same
problem; training writes no model."""

from __future__ import annotations

import gc

import pytest

from .helpers import clean_error, copy, copy_tree

DETECTION = "layouts/detection_train_data"
RECOGNITION = "layouts/recognition_train_data"
TINY_DETECT = ["--epochs", 1, "--image-size", 64, "--workers", 2, "--no-onnx"]
TINY_RECOGNIZE = ["--backbone", "mobilefacenet", "--embedding-size", 32, "--batch-size", 20, "--epochs", 1,
                  "--workers", 2, "--no-onnx", "--lr", 0.01]  # fmt: skip


def no_model(out) -> None:
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()


def inspect_finds(cli, path, problem: str) -> None:
    """`facekit inspect PATH` exits 1 and lists `problem`."""
    result = cli("inspect", path)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"  - {problem}" in result.output, result.output


@pytest.fixture
def detection(shared_data, tmp_path):
    """A writable copy of the real detection_train_data (train: 12 photos, val: 3)."""
    for split in ("train", "val"):
        copy_tree(shared_data / DETECTION / split, tmp_path / "data" / split)
    return tmp_path / "data"


# (how line 3 of train/label.txt, the second face of '# 0--dlib/2007_007763.jpg', goes wrong, the error after
# 'train/label.txt')
LABEL_FAULTS = {
    "7-numbers": (
        "194.0 90.0 37.0 37.0 205.000 105.667 0.000",
        ":3: expected 4 or 20 numbers (x y w h [5 x (lx ly flag)] score) after '# 0--dlib/2007_007763.jpg', got 7",
    ),
    "words": (
        "left eye, right eye",
        ":3: expected numbers after '# 0--dlib/2007_007763.jpg', got 'left eye, right eye'",
    ),
    "negative-size": ("194 90 -37 37", ":3: negative box size w=-37 h=37 in a face of '# 0--dlib/2007_007763.jpg'"),
    "nan": ("194 90 nan 37", ":3: non-finite number in '194 90 nan 37'"),
    "missing-photo": ("# 0--dlib/lost.jpg", ": 1 of 13 images missing under"),
    "outside-photo": (
        "5194 90 37 37",
        ":3: face box (x1, y1, x2, y2) = (5194, 90, 5231, 127) lies outside the 500x375 image '0--dlib/2007_007763.jpg'"
        " by more than 10% of its width or height",
    ),
}


@pytest.mark.parametrize("fault", sorted(LABEL_FAULTS))
def test_malformed_label_txt(cli, detection, scrfd, tmp_path, fault):
    """A malformed label.txt (7 numbers in a face line, words, a negative box, NaN, a photo that is not there, a face
    far outside its photo):
    train-detect and eval-detect fail with one line naming label.txt and the line (the photo for a missing one)
    and what was expected, write no model; inspect lists the same problem."""
    label = detection / "train/label.txt"
    lines = label.read_text().splitlines()
    text, message = LABEL_FAULTS[fault]
    lines[2:3] = [text] if fault != "missing-photo" else [lines[2], text]
    label.write_text("\n".join(lines) + "\n")
    problem = f"{label}{message}"
    if fault == "missing-photo":
        problem += f" {detection / 'train/images'}: 0--dlib/lost.jpg (line 4)"

    out = tmp_path / "model"
    clean_error(cli("train-detect", detection, out, *TINY_DETECT), 1, problem)
    no_model(out)
    clean_error(cli("eval-detect", detection / "train", "--model", scrfd), 1, f"{label}")
    if fault == "missing-photo":  # inspect counts what is missing its own way
        inspect_finds(cli, detection, f"{label}: 1 of 13 images missing, e.g. ['0--dlib/lost.jpg']")
    else:
        inspect_finds(cli, detection, problem)


@pytest.fixture
def recognition(shared_data, tmp_path):
    """A writable copy of the real recognition_train_data (cele.rec/.idx/.lst and property, written by MXNet)."""
    for name in ("cele.rec", "cele.idx", "cele.lst", "property"):
        copy(shared_data / RECOGNITION / name, tmp_path / "rec" / name)
    return tmp_path / "rec"


def idx_offsets(path) -> dict[int, int]:
    return {int(k): int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


@pytest.mark.parametrize("cut", ["two-thirds", "last-20-bytes"])
def test_truncated_rec(cli, recognition, tmp_path, cut):
    """A truncated cele.rec (cut at two thirds, or 20 bytes short, as by a full disk or an interrupted copy):
    train-recognize fails with one line naming the .idx key that points past the end of cele.rec, or the record
    whose payload runs past it (offset, key, sizes); inspect lists it."""
    rec = recognition / "cele.rec"
    data = rec.read_bytes()
    size = len(data) * 2 // 3 if cut == "two-thirds" else len(data) - 20
    rec.write_bytes(data[:size])
    offsets = idx_offsets(recognition / "cele.idx")
    if cut == "two-thirds":
        key = next(k for k, offset in offsets.items() if offset + 8 > size)
        problem = f"{recognition / 'cele.idx'}: key {key} points at offset {offsets[key]}, past the end of cele.rec "
        problem += f"({size} bytes)"
    else:
        key = max(offsets, key=offsets.get)
        problem = f"{rec}: offset {offsets[key]} (key {key}): payload of "
    out = tmp_path / "model"
    line = clean_error(cli("train-recognize", recognition, out, *TINY_RECOGNIZE), 1, problem)
    if cut == "last-20-bytes":
        assert line.endswith(f"bytes runs past the end of the file ({size} bytes)")
    no_model(out)
    inspect_finds(cli, recognition, line.removeprefix("Error: "))


@pytest.mark.parametrize("fault", ["past-the-end", "misaligned"])
def test_idx_points_past_the_end(cli, recognition, tmp_path, fault):
    """A .idx that does not match its .rec: a key past the end of cele.rec (an .idx of a longer .rec), or an image
    key pointing into the middle of a record: one line naming cele.idx and the key and offset, or cele.rec's bad
    magic at that offset (read by a DataLoader worker during training: still one line); inspect lists it."""
    idx = recognition / "cele.idx"
    size = (recognition / "cele.rec").stat().st_size
    offsets = idx_offsets(idx)
    if fault == "past-the-end":
        offsets[331] = size + 100
        problem = f"{idx}: key 331 points at offset {size + 100}, past the end of cele.rec ({size} bytes)"
    else:
        offsets[150] += 12
        problem = f"{recognition / 'cele.rec'}: offset {offsets[150]} (key 150): bad magic 0x"
    idx.write_text("".join(f"{k}\t{v}\n" for k, v in offsets.items()))
    out = tmp_path / "model"
    args = [*TINY_RECOGNIZE, "--batch-size", 300]  # one step that reads every image
    clean_error(cli("train-recognize", recognition, out, *args), 1, problem)
    no_model(out)
    result = cli("inspect", recognition)
    assert result.exit_code == 1 and problem in result.output and "Traceback" not in result.output


@pytest.fixture
def tiny_rec(shared_data, cli, tmp_path):
    """ORL s1 and s2 (20 aligned crops) packed by pack-rec into cele.rec/.idx/.lst + property."""
    for person in ("s1", "s2"):
        copy_tree(shared_data / f"faces/orl_aligned_112/{person}", tmp_path / "crops" / person)
    result = cli("pack-rec", tmp_path / "crops", tmp_path / "rec")
    assert result.exit_code == 0, result.output
    return tmp_path / "rec"


@pytest.mark.usefixtures("one_thread")
def test_missing_property(cli, tiny_rec, tmp_path):
    """recognition_train_data without its property file: inspect flags it (exit 1, naming the folder and the
    expected line 'num_classes,height,width'); train-recognize still trains, the class count coming from the
    header records. A malformed property ('2,112') stops train-recognize with one line naming property:1."""
    (tiny_rec / "property").unlink()
    inspect_finds(cli, tiny_rec, f"{tiny_rec}: no property file (expected one line 'num_classes,height,width')")
    out = tmp_path / "model"
    result = cli("train-recognize", tiny_rec, out, *TINY_RECOGNIZE, "--workers", 0)
    assert result.exit_code == 0 and "trained 1 steps" in result.output, result.output
    assert (out / "model.pt").is_file()

    (tiny_rec / "property").write_text("2,112\n")
    problem = f"{tiny_rec / 'property'}:1: expected 'num_classes,height,width' (positive integers), got '2,112'"
    clean_error(cli("train-recognize", tiny_rec, tmp_path / "other", *TINY_RECOGNIZE), 1, problem)
    inspect_finds(cli, tiny_rec, problem)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("layout", ["detection", "identity-folders", "rec"])
def test_unreadable_image_in_training_data(cli, shared_data, tiny_rec, tmp_path, capfd, layout):
    """A training photo that cannot be decoded (a detection photo or an aligned crop cut to 100 bytes, a record
    whose JPEG bytes are zeroed): met by a DataLoader worker during training, it still ends in one line naming the
    file (or cele.rec and key) and the item, exit 1, no traceback (the workers are joined before the error goes on,
    so no queue feeder thread prints one later, on the process's own stderr); inspect lists it."""
    if layout == "detection":
        data = copy_tree(shared_data / DETECTION / "train", tmp_path / "data/train").parent
        bad = data / "train/images/1--pseudo/alex-lacamoire.png"
        bad.write_bytes(bad.read_bytes()[:100])
        command = ["train-detect", data, tmp_path / "model", *TINY_DETECT, "--batch-size", 12]
        problem = f"{bad}: cannot decode image (100 bytes): truncated or corrupt"
    elif layout == "identity-folders":
        data = tmp_path / "crops"
        for person in ("s1", "s2"):
            copy_tree(shared_data / f"faces/orl_aligned_112/{person}", data / person)
        bad = data / "s1/3.jpg"
        bad.write_bytes(bad.read_bytes()[:100])
        command = ["train-recognize", data, tmp_path / "model", *TINY_RECOGNIZE]
        problem = f"{bad}: item 2: cannot decode image (100 bytes): truncated or corrupt"
    else:
        data = tiny_rec
        start = idx_offsets(data / "cele.idx")[5] + 8 + 32  # record head, IRHeader with 2 labels
        rec = bytearray((data / "cele.rec").read_bytes())
        rec[start + 2 : start + 600] = bytes(598)  # keep the JPEG's SOI marker, zero its tables
        (data / "cele.rec").write_bytes(rec)
        command = ["train-recognize", data, tmp_path / "model", *TINY_RECOGNIZE]
        problem = f"{data / 'cele.rec'}: key 5: item 4: cannot decode image"
    clean_error(cli(*command), 1, problem)
    gc.collect()  # what the workers' iterator would leave to the collector happens now, before the check
    assert "Traceback" not in capfd.readouterr().err
    no_model(tmp_path / "model")
    result = cli("inspect", data)
    assert result.exit_code == 1 and "Traceback" not in result.output
    name = str(bad) if layout != "rec" else f"{data / 'cele.rec'}: key 5: cannot decode image"
    assert name in result.output, result.output
