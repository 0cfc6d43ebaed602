"""`facekit embed`: one row per face (its photo, box, landmarks, score, embedding) in an .h5 or an .npy with a JSON
Lines sidecar; the embeddings are recognize's and build-db's for the same photos."""

from __future__ import annotations

import json

import h5py
import numpy as np

from .helpers import KNN, clean_error, copy_tree, no_face_photo, records, skipped


def test_all_faces_match_recognize(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """--all-faces on knn_examples/test (two photos of two people): every face recognize reports, at the same box,
    with the embedding whose best gallery similarity is the one recognize printed."""
    out = tmp_path / "faces.h5"
    result = cli("embed", shared_data / KNN / "test", "--detect", scrfd, "--recognize", random_recognizer,
                 "--out", out, "--all-faces", "--batch", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    found = cli("recognize", shared_data / KNN / "test", knn_gallery, scrfd, random_recognizer)
    assert found.exit_code == 0, found.output
    expected = records(found.stdout)
    with h5py.File(out, "r") as f:
        embeddings, boxes = f["embeddings"][:], f["boxes"][:]
        images, faces = f["images"].asstr()[:], f["faces"][:]
        assert f.attrs["recognizer_fingerprint"] == knn_gallery_fingerprint(knn_gallery)
    with h5py.File(knn_gallery, "r") as g:
        gallery = g["embeddings"][:]
    assert len(embeddings) == sum(len(r["faces"]) for r in expected.values()) >= 6
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, rtol=1e-5)
    for row, (image, face) in enumerate(zip(images, faces, strict=True)):
        reported = expected[image.rsplit("/", 1)[-1]]["faces"][face]
        np.testing.assert_allclose(boxes[row], reported["box"], atol=0.01)
        assert abs(float((gallery @ embeddings[row]).max()) - reported["similarity"]) <= 2e-5


def knn_gallery_fingerprint(path) -> str:
    with h5py.File(path, "r") as g:
        return g.attrs["recognizer_fingerprint"].decode()


def test_largest_face_npy_equals_build_db(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """The default (the largest face of each photo) on build-db's own photos, as .npy + .jsonl: the gallery's
    embeddings, row for row by photo."""
    out = tmp_path / "train.npy"
    result = cli(
        "embed", shared_data / KNN / "train", "--detect", scrfd, "--recognize", random_recognizer, "--out", out
    )
    assert result.exit_code == 0, result.output
    embeddings = np.load(out)
    lines = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [line["row"] for line in lines] == list(range(len(embeddings)))
    assert {"image", "face", "box", "score", "landmarks"} <= set(lines[0])
    with h5py.File(knn_gallery, "r") as g:
        sources = [s.decode() for s in g["sources"][:]]
        gallery = g["embeddings"][:]
    assert len(lines) == len(sources) == 9
    for line, embedding in zip(lines, embeddings, strict=True):
        row = sources.index(line["image"])
        assert float(gallery[row] @ embedding) > 0.99999


def test_embed_skips_bad_photos_and_keeps_the_rest(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """A corrupt photo and one without a face are listed; the good photos' faces are written (exit 0). Only bad
    photos: exit 1, nothing written. An output that is not .h5 or .npy (a photo, a .csv): exit 2."""
    photos = copy_tree(shared_data / KNN / "train/obama", tmp_path / "photos")
    (photos / "bad.jpg").write_bytes((photos / "obama.jpg").read_bytes()[:5000])
    no_face_photo(shared_data, photos / "suit.jpg")
    out = tmp_path / "out.h5"
    models = ["--detect", scrfd, "--recognize", random_recognizer]
    result = cli("embed", photos, *models, "--out", out)
    skipped(result, "warning: unreadable photos, skipped", photos / "bad.jpg")
    skipped(result, "warning: photos without a face, skipped", photos / "suit.jpg")
    assert "2 faces from 3 photos" in result.output and out.is_file()
    clean_error(
        cli("embed", photos / "suit.jpg", *models, "--out", tmp_path / "none.h5"), 1, "no face found in 1 photos"
    )
    clean_error(cli("embed", photos / "bad.jpg", *models, "--out", tmp_path / "none.h5"), 1, "bad.jpg: cannot decode")
    assert not (tmp_path / "none.h5").exists()
    for out in (photos / "obama.jpg", tmp_path / "x.csv"):
        clean_error(cli("embed", photos, *models, "--out", out), 2, f"{out}: expected a file ending in .h5 or .npy")
