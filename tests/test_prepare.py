"""Real-photo data preparation: `facekit align`, `pack-rec --detect`, `make-bin` (CelebA photos, SCRFD-500M)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekit.align import template
from facekit.data.pairs import sample_pairs
from facekit.data.recset import open_recognition_set
from facekit.data.verification import bin_people, load_bin
from facekit.errors import DataFormatError
from facekit.recognition.verification import fold_indices
from facekit.runtime.detector import DetectSettings, Face
from facekit.runtime.pipeline import PICKS, pick_index
from facekit.runtime.prepare import AlignSettings, align_folders, output_names

PEOPLE = ("7201", "7202", "7370", "7451")  # 68 photos: 7370 has 2 without a face, 7201 two with several faces
NO_FACE = ["7370/184887.jpg", "7370/193366.jpg"]
SEVERAL = ["7201/056138.jpg (2 faces)", "7201/125570.jpg (3 faces)"]


@pytest.fixture(scope="module")
def raw(shared_data, tmp_path_factory) -> Path:
    """A few CelebA people's raw photos (copied so that tests can add files)."""
    root = tmp_path_factory.mktemp("raw") / "people"
    for person in PEOPLE:
        shutil.copytree(shared_data / "faces/celeba_subset" / person, root / person)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture(scope="module")
def aligned(raw, scrfd, tmp_path_factory):
    """`facekit align raw OUT --detect SCRFD-500M`: (OUT, the click Result)."""
    from click.testing import CliRunner

    from facekit.cli import main

    out = tmp_path_factory.mktemp("aligned") / "out"
    result = CliRunner().invoke(main, ["align", str(raw), str(out), "--detect", str(scrfd)], catch_exceptions=False)
    return out, result


def photos(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


def test_align_celeba_people(aligned, raw, scrfd):
    out, result = aligned
    assert result.exit_code == 0, result.output
    sources = photos(raw)
    assert "aligned 66 of 68 photos (97.1 %)" in result.stdout
    assert "photos without a face (2):\n  - 7370/184887.jpg\n  - 7370/193366.jpg" in result.stderr
    assert "photos with several faces (kept the largest one) (2):" in result.stderr
    assert all(f"  - {line}" in result.stderr for line in SEVERAL)
    assert photos(out) == [s for s in sources if s not in NO_FACE]
    assert sorted(p.name for p in out.iterdir()) == [*PEOPLE, "alignment.json"]
    record = json.loads((out / "alignment.json").read_text())
    assert record["format"] == "facekit-alignment/1" and record["source"] == str(raw.resolve())
    settings = record["settings"]
    assert settings["fingerprint"] == hashlib.sha256(scrfd.read_bytes()).hexdigest()
    assert (settings["size"], settings["pick"], settings["max_size"]) == (112, "largest", 640)
    assert np.allclose(settings["template"], template(112), atol=1e-4)
    assert record["summary"] == {"photos": 68, "ok": 66, "no_face": 2, "unreadable": 0, "several_faces": 2}
    by_source = {r["source"]: r for r in record["photos"]}
    assert list(by_source) == sources
    for source in NO_FACE:
        assert by_source[source] == {"source": source, "output": None, "status": "no_face", "faces": 0, "picked": None,
                                     "box": None, "score": None, "landmarks": None, "error": None}  # fmt: skip
    several = by_source["7201/125570.jpg"]
    assert several["faces"] == 3 and several["status"] == "ok" and 0 <= several["picked"] < 3
    ok = [r for r in record["photos"] if r["status"] == "ok"]
    assert all(r["output"] == r["source"] and len(r["landmarks"]) == 5 and r["score"] > 0.5 for r in ok)
    # The crop is the face warped onto the template: the detector finds its landmarks there.
    from facekit.runtime.detector import load_face_detector

    detector = load_face_detector(scrfd)
    errors = []
    for r in ok[::8]:
        crop = cv2.imread(str(out / r["output"]))
        assert crop.shape == (112, 112, 3)
        faces = detector.detect(cv2.copyMakeBorder(crop, 56, 56, 56, 56, cv2.BORDER_CONSTANT), DetectSettings())
        errors.append(np.abs(max(faces, key=lambda f: f.score).landmarks - 56 - template(112)).mean())
    assert np.median(errors) < 4, errors  # ~2 px; an unaligned crop is off by 10 or more


def test_rerun_does_no_work_and_settings_must_match(aligned, raw, scrfd, cli):
    out, _ = aligned
    crops = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    result = cli("align", raw, out, "--detect", scrfd)
    assert result.exit_code == 0 and "(0 this run, 68 done before)" in result.stdout, result.output
    assert "  - 7370/184887.jpg" in result.stderr  # the end report covers the earlier run's photos
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == crops
    result = cli("align", raw, out, "--detect", scrfd, "--pick", "center")
    assert result.exit_code == 1
    assert f"Error: {out}: aligned before with other settings (pick largest -> center); choose another OUT or pass " \
           "--force\n" == result.output  # fmt: skip


def test_interrupted_run_keeps_its_progress(shared_data, scrfd, tmp_path):
    from facekit.runtime.detector import load_face_detector

    src = tmp_path / "src"
    shutil.copytree(shared_data / "faces/celeba_subset/7202", src / "7202")
    detector = load_face_detector(scrfd)
    settings = AlignSettings(size=112, pick="largest", max_size=640, threshold=0.5)

    class Interrupted:
        calls = 0
        path = detector.path
        fingerprint = detector.fingerprint

        def detect(self, image: np.ndarray, settings: DetectSettings) -> list[Face]:
            self.calls += 1
            if self.calls == 7:
                raise KeyboardInterrupt
            return detector.detect(image, settings)

    with pytest.raises(KeyboardInterrupt):
        align_folders(src, tmp_path / "out", Interrupted(), settings, save_every=4)
    saved = json.loads((tmp_path / "out/alignment.json").read_text())
    assert len(saved["photos"]) == 6 and len(photos(tmp_path / "out")) == 6
    report = align_folders(src, tmp_path / "out", detector, settings, workers=2)
    assert report.reused == 6 and report.summary()["ok"] == 9
    fresh = align_folders(src, tmp_path / "fresh", detector, settings)
    assert report.records == fresh.records  # workers and resuming change nothing
    assert [(tmp_path / "out" / r["output"]).read_bytes() for r in report.records] == [
        (tmp_path / "fresh" / r["output"]).read_bytes() for r in fresh.records
    ]


def test_name_clashes_unreadable_photos_and_force(shared_data, scrfd, cli, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(shared_data / "faces/celeba_subset/7451", src / "7451")
    cv2.imwrite(str(src / "7451/043033.png"), cv2.imread(str(src / "7451/043033.jpg")))
    (src / "7451/broken.jpg").write_bytes(b"not a photo")
    result = cli("align", src, tmp_path / "out", "--detect", scrfd)
    assert result.exit_code == 0, result.output
    assert "warning: unreadable photos (1):\n  - " in result.stderr
    assert "broken.jpg: cannot decode image" in result.stderr
    record = json.loads((tmp_path / "out/alignment.json").read_text())
    outputs = {r["source"]: r["output"] for r in record["photos"]}
    assert outputs["7451/043033.jpg"] == "7451/043033.jpg" and outputs["7451/043033.png"] == "7451/043033.png.jpg"
    assert outputs["7451/broken.jpg"] is None
    assert (tmp_path / "out/7451/043033.png.jpg").read_bytes() == (tmp_path / "out/7451/043033.jpg").read_bytes()
    (src / "7451/043033.png").unlink()
    result = cli("align", src, tmp_path / "out", "--detect", scrfd, "--pick", "center", "--force")
    assert result.exit_code == 0 and "(7 this run, 0 done before)" in result.stdout, result.output
    assert "removed 1 crops of an earlier run" in result.stderr
    assert not (tmp_path / "out/7451/043033.png.jpg").exists()


def test_output_names():
    names = output_names(["a/x.png", "a/x.jpg", "a/x.JPG", "a/y.png", "b/x.png", "a/x.png.jpg"])
    assert names == {"a/x.jpg": "a/x.jpg", "a/x.png.jpg": "a/x.png.jpg", "a/x.JPG": "a/x.JPG.jpg",
                     "a/x.png": "a/x.png.2.jpg", "a/y.png": "a/y.jpg", "b/x.png": "b/x.jpg"}  # fmt: skip


@pytest.mark.parametrize("pick", sorted(PICKS))
def test_every_pick(pick):
    big_corner = Face(np.array([0, 0, 60, 60.0]), 0.7, np.zeros((5, 2)))
    small_centre = Face(np.array([40, 40, 60, 60.0]), 0.6, np.zeros((5, 2)))
    sure = Face(np.array([80, 0, 90, 10.0]), 0.99, np.zeros((5, 2)))
    expected = {"largest": 0, "center": 1, "score": 2}[pick]
    assert pick_index([big_corner, small_centre, sure], pick, (100, 100)) == expected


def test_bad_align_input(raw, scrfd, cli, tmp_path):
    (tmp_path / "empty").mkdir()
    for src, out, code, message in [
        (tmp_path / "empty", tmp_path / "o1", 1, "no identity folders with images"),
        (raw, raw / "7201" / "aligned", 2, "lies inside the photo folder"),
        (raw, raw, 2, "is the photo folder (an input)"),
        (raw, raw.parent, 2, "the output folder contains the source folder"),
    ]:
        result = cli("align", src, out, "--detect", scrfd)
        assert result.exit_code == code and result.output.count("\n") == 1 and message in result.output, result.output
    assert not (tmp_path / "o1").exists() and not (raw / "7201/aligned").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("x")
    result = cli("align", raw, tmp_path / "mine", "--detect", scrfd)
    assert result.exit_code == 1 and "not empty and not made by facekit align" in result.output


def test_pack_rec_detect(aligned, raw, scrfd, cli, tmp_path):
    out, _ = aligned
    result = cli("pack-rec", raw, tmp_path / "rec", "--detect", scrfd, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert "packed 66 faces of 4 identities from 68 photos" in result.stdout and "  - " in result.stderr
    expected = [s for s in photos(raw) if s not in NO_FACE]
    with open_recognition_set(tmp_path / "rec") as rset:
        assert rset.num_classes == 4 and len(rset) == 66
        lst = [line.split("\t")[1] for line in (tmp_path / "rec/cele.lst").read_text().splitlines()]
        assert lst == expected
        labels = Counter(rset[i][0] for i in range(len(rset)))
        assert labels == {0: 30, 1: 9, 2: 21, 3: 6}
        assert rset[40][1] == (out / lst[40]).read_bytes()  # the same crop as `facekit align` writes
    assert cli("pack-rec", raw, tmp_path / "r2", "--detect", scrfd, "--resize").exit_code == 2


def test_make_bin_from_aligned_crops_person_disjoint(shared_data, cli, tmp_path):
    src = shared_data / "faces/orl_aligned_112"
    result = cli("make-bin", src, tmp_path / "orl.bin")
    assert result.exit_code == 0, result.output
    assert "wrote 3000 pairs (1500 same, 1500 different) of 40 people in 10 person-disjoint folds" in result.stdout
    vset = load_bin(tmp_path / "orl.bin")
    person = {p.read_bytes(): p.parent.name for p in src.rglob("*.jpg")}  # crops are stored byte for byte
    people = [(person[a], person[b]) for a, b in zip(vset.images[::2], vset.images[1::2], strict=True)]
    assert [a == b for a, b in people] == vset.issame
    assert len({frozenset(pair) for pair in zip(vset.images[::2], vset.images[1::2], strict=True)}) == 3000
    fold_people = []
    for fold in fold_indices(len(vset), 10):
        assert sum(vset.issame[i] for i in fold) == len(fold) / 2 == 150
        fold_people.append({name for i in fold for name in people[i]})
    assert sorted(len(f) for f in fold_people) == [4] * 10 and len(set().union(*fold_people)) == 40
    sidecar = json.loads((tmp_path / "orl.json").read_text())
    assert sidecar == {"format": "facekit-pairs/1", "people": sorted(f"s{i}" for i in range(1, 41)), "pairs": 3000,
                       "same": 1500, "folds": 10, "person_disjoint_folds": True, "seed": 0, "source": str(src),
                       "aligned_by": None, "size": 112, "template": None}  # fmt: skip
    assert bin_people(tmp_path / "orl.bin") == sidecar["people"]
    assert cli("make-bin", src, tmp_path / "again.bin").exit_code == 0
    assert (tmp_path / "again.bin").read_bytes() == (tmp_path / "orl.bin").read_bytes()
    assert cli("make-bin", src, tmp_path / "seed1.bin", "--seed", 1).exit_code == 0
    assert load_bin(tmp_path / "seed1.bin").images != vset.images


def test_make_bin_detect_raw_photos(aligned, raw, scrfd, cli, tmp_path):
    out, _ = aligned
    result = cli("make-bin", raw, tmp_path / "raw.bin", "--pairs", 200, "--detect", scrfd)
    assert result.exit_code == 0, result.output
    assert "wrote 200 pairs (100 same, 100 different) of 4 people in 10 folds that share people" in result.stdout
    assert "photos without a face, skipped (2)" in result.stderr
    sidecar = json.loads((tmp_path / "raw.json").read_text())
    assert sidecar["people"] == list(PEOPLE) and sidecar["aligned_by"] == str(scrfd)
    np.testing.assert_allclose(sidecar["template"], template(112), atol=1e-4)
    assert sidecar["person_disjoint_folds"] is False
    for fold in fold_indices(200, 10):
        assert sum(load_bin(tmp_path / "raw.bin").issame[i] for i in fold) == 10
    # aligning in memory gives the crops `facekit align` writes
    assert cli("make-bin", out, tmp_path / "crops.bin", "--pairs", 200).exit_code == 0
    assert (tmp_path / "crops.bin").read_bytes() == (tmp_path / "raw.bin").read_bytes()


def test_bad_make_bin_input(shared_data, raw, cli, tmp_path):
    mixed = tmp_path / "mixed"
    for person in ("s1", "s2"):
        shutil.copytree(shared_data / "faces/orl_aligned_112" / person, mixed / person)
    cv2.imwrite(str(mixed / "s2/small.png"), np.zeros((100, 100, 3), np.uint8))
    (tmp_path / "empty").mkdir()
    for args, message in [
        ((mixed, tmp_path / "m.bin"), "s2/small.png: 100x100, but "),
        ((raw, tmp_path / "r.bin"), "7201/001085.jpg: 256x219 is not square; expected aligned crops"),
        ((tmp_path / "empty", tmp_path / "e.bin"), "no identity folders with images"),
        ((shared_data / "faces/orl_aligned_112/s1", tmp_path / "s.bin"), "no identity folders with images"),
    ]:
        result = cli("make-bin", *args)
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
    (mixed / "s2/small.png").unlink()
    result = cli("make-bin", mixed, tmp_path / "few.bin", "--pairs", 3000)
    assert result.exit_code == 0 and "warning: only 180 balanced distinct pairs exist, not 3000" in result.output
    assert len(load_bin(tmp_path / "few.bin")) == 180
    assert cli("make-bin", mixed, tmp_path / "x.bin", "--pairs", 30).exit_code == 2
    assert cli("make-bin", mixed, tmp_path / "x.json").exit_code == 2
    assert cli("make-bin", mixed, tmp_path / "x.bin", "--size", 112).exit_code == 2
    shutil.rmtree(mixed / "s2")
    result = cli("make-bin", mixed, tmp_path / "one.bin")
    assert result.exit_code == 1 and "fewer than 20 balanced pairs" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "few.bin", "few.json", "mixed"]


def test_sample_pairs_folds_and_shortage():
    counts = [1, 2, 30, 5, 7, 3, 12, 4, 9, 2] * 3
    plan = sample_pairs(counts, 600, seed=3)
    assert len(plan.pairs) == 600 and plan.fold_people is not None
    assert sorted(p for f in plan.fold_people for p in f) == list(range(30))
    for f, fold in enumerate(fold_indices(600, 10)):
        pairs = [plan.pairs[i] for i in fold]
        assert [same for *_, same in pairs] == [True] * 30 + [False] * 30
        assert all((a[0] == b[0]) == same and {a[0], b[0]} <= set(plan.fold_people[f]) for a, b, same in pairs)
        assert all(a != b and a[1] < counts[a[0]] and b[1] < counts[b[0]] for a, b, _ in pairs)
    assert len({frozenset((a, b)) for a, b, _ in plan.pairs}) == 600
    assert sample_pairs(counts, 600, seed=3) == plan and sample_pairs(counts, 600, seed=4) != plan
    few = sample_pairs([3, 4, 2], 1000, seed=0)  # 10 same pairs exist: one per fold
    assert len(few.pairs) == 20 and few.fold_people is None
    with pytest.raises(DataFormatError, match="fewer than 20 balanced pairs"):
        sample_pairs([3, 2, 1], 1000, seed=0, folds=10)
    with pytest.raises(ValueError, match="multiple of 20"):
        sample_pairs(counts, 30, seed=0)


def test_bin_people_reads_the_sidecar(tmp_path):
    assert bin_people(tmp_path / "x.bin") is None
    (tmp_path / "x.json").write_text(json.dumps({"format": "facekit-pairs/1", "people": ["a", "b"]}))
    assert bin_people(tmp_path / "x.bin") == ["a", "b"]
    for bad, message in [("{", "not JSON"), ('{"people": ["a"]}', '"format": "facekit-pairs/1"'),
                         ('{"format": "facekit-pairs/1", "people": [1]}', '"people" must be a list')]:  # fmt: skip
        (tmp_path / "x.json").write_text(bad)
        with pytest.raises(DataFormatError, match=message):
            bin_people(tmp_path / "x.bin")
